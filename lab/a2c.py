"""Stage 11 of the pipeline: A2C, a policy optimised against the reward model (RLAIF 2.4).

A small instruct model writes TL;DR summaries of training-split posts. One update:

  1. roll out: sample a summary for each post of a batch (``prompts/rl/policy.jinja``);
  2. reward: the reward model's score of the finished summary (or, for direct RLAIF, the
     exported labeler's judge on it, :class:`LabelerReward`), centred and scaled by its
     running mean and standard deviation, minus a per-token KL penalty
     ``kl_coef * (log pi(a|s) - log pi_ref(a|s))`` to the frozen starting policy;
  3. advantages with GAE(gamma, lambda) against a value head on the policy's last hidden state;
  4. one gradient step on  pg_loss + vf_coef * value_loss - ent_coef * entropy,
     with gradient clipping (A2C is PPO with one epoch, one minibatch and no clipping).

Only the top ``train_layers`` blocks (and the final norm) of the policy train, which is what
makes a 135M policy fit 2 CPU cores; the embeddings (tied to the LM head) stay frozen.
Direct RLAIF (``reward=labeler``) uses exactly the judge of the exported ``best.yaml``
(``prompt.judge`` with its prompt, exemplars and decoding, through :class:`lab.label.Labeler`):
a judge that rates each response alone (rating, self-reward) gives the summary's expected
rating rescaled to [0, 1] by its scale, (s - min) / (max - min); any other judge (pairwise,
pairwise-tie) gives p = P(summary better than the anchor), the anchor being the first summary
(``pair.first``) of the data pair the run holds for that post. ``reward.json`` in the run
folder records which reward, judge and rule the run used.

Every update appends a row to ``log.csv`` (reward, KL, losses, entropy, length); a checkpoint
of the trained parameters, the value head and the optimizer is written every
``checkpoint_every`` updates, and a rerun resumes from it. ``curves.png`` plots the log.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from annotated_types import Ge, Gt, Le
from torch import nn
from tqdm import tqdm

from lab import data as data_mod
from lab.backends.hf import format_chat, load_causal_lm
from lab.judges.rating import RatingJudge
from lab.pair import Pair
from lab.prompts import render_template
from lab.reward_model import _layers, save_atomic, trainable_state
from lab.rm_labels import post_text
from lab.run import RunError, write_csv_atomic, write_json_atomic

LOG_FIELDS = ["update", "reward", "score", "kl", "pg_loss", "value_loss", "entropy",
              "length", "truncated", "seconds"]


@dataclass(frozen=True)
class A2CConfig:
    """Everything an A2C run depends on (written to ``config.json``)."""

    policy: str = "smollm2-135m"
    """Starting policy: catalog name (``qwen2.5-coder-0.5b`` is the larger option) or folder."""
    reward: str = "rm"
    """``rm``: the reward model in ``rm_dir``; ``labeler``: direct RLAIF, the judge of
    ``labeler`` scores each summary (:class:`LabelerReward`: a rating judge's expected rating
    rescaled to [0, 1], any other judge's P(summary better than the post's first data
    summary))."""
    rm_dir: str | None = None
    """A trained reward-model folder (``DIR/rm_ai`` from ``rlaif rm train``)."""
    labeler: str | None = None
    """Exported labeler config (``best.yaml``) for direct RLAIF: its judge, prompt, exemplars,
    decoding and backend give the reward, exactly as they label."""
    data: str | None = None
    """TL;DR comparisons whose training-split posts are the prompts (None: $RLAIF_DATA_DIR)."""
    updates: int = 40
    """Gradient updates."""
    batch_size: int = 4
    """Posts (episodes) per update."""
    max_new_tokens: int = 64
    """Longest summary, in tokens; a summary that has not ended by then is truncated (see
    ``missing_eos_penalty``; ``log.csv`` records the truncated share per update)."""
    missing_eos_penalty: float = 1.0
    """Subtracted from a truncated summary's (normalised) score, so that the policy learns to
    end within the budget instead of being rewarded for running into it (TRL's
    ``missing_eos_penalty``); 0 turns it off."""
    max_post_tokens: int = 256
    """Posts longer than this many tokens are not used (compute on 2 cores)."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts."""
    lr: float = 1e-4
    """Adam learning rate."""
    train_layers: int = 4
    """Top transformer blocks of the policy that train."""
    kl_coef: float = 0.05
    """Weight of the per-token KL penalty to the starting policy."""
    gamma: float = 1.0
    """Discount."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    ent_coef: float = 0.001
    """Weight of the entropy bonus."""
    normalize_reward: bool = True
    """Divide the score by its running standard deviation (and center it) before adding the
    KL penalty, so that the KL coefficient means the same whatever the reward model's scale."""
    max_grad_norm: float = 1.0
    """Gradient clipping."""
    checkpoint_every: int = 10
    """Updates between checkpoints."""
    seed: int = 0
    """Seed of the post order, the sampling and the value head."""


LIMITS = {
    "reward": Literal["rm", "labeler"], "updates": [Ge(1)], "batch_size": [Ge(1)],
    "max_new_tokens": [Ge(1)], "missing_eos_penalty": [Ge(0)], "max_post_tokens": [Ge(1)],
    "temperature": [Gt(0)],
    "lr": [Gt(0)], "train_layers": [Ge(0)], "kl_coef": [Ge(0)], "gamma": [Ge(0), Le(1)],
    "gae_lambda": [Ge(0), Le(1)], "vf_coef": [Ge(0)], "ent_coef": [Ge(0)],
    "max_grad_norm": [Gt(0)], "checkpoint_every": [Ge(1)],
}
"""Ranges and choices of :class:`A2CConfig` values (checked by :func:`lab.typed.build`)."""


def policy_prompt(tokenizer, post: str) -> str:
    """The policy's prompt for one post (chat template when the tokenizer has one)."""
    user = render_template("rl/policy.jinja", part="user", post_block=post)
    assistant = render_template("rl/policy.jinja", part="assistant", post_block=post)
    return format_chat(tokenizer, user, assistant, bool(getattr(tokenizer, "chat_template", None)))


def post_pairs(data: str | None, split: str = "train") -> list[tuple[str, str, Pair]]:
    """Distinct posts of a split: (post id, the post as ``prompts/post.jinja`` renders it, its
    data pair with the smallest key: the one pair the lab holds for that post)."""
    pairs, _ = data_mod.load_pairs(data_mod.resolve_data_path(data))
    seen, posts = set(), []
    for p in sorted(data_mod.select(pairs, "all", split), key=lambda p: p.key):
        if p.post_id not in seen:
            seen.add(p.post_id)
            posts.append((p.post_id, post_text(p), p))
    return posts


def anchors_of(posts: list[tuple[str, str, Pair]]) -> dict[str, Pair]:
    """Each post's data pair by the post as rendered (the scorer's input), from
    :func:`post_pairs` rows (the first, where two posts render alike)."""
    out: dict[str, Pair] = {}
    for _, text, pair in posts:
        out.setdefault(text, pair)
    return out


def training_posts(data: str | None, tokenizer, max_tokens: int, split: str = "train") -> list:
    """Distinct posts of a split, short enough: (post id, the post as ``prompts/post.jinja``
    renders it, its data pair, see :func:`post_pairs`)."""
    posts = [(i, text, p) for i, text, p in post_pairs(data, split)
             if len(tokenizer.encode(text, add_special_tokens=False)) <= max_tokens]
    if not posts:
        raise RunError(f"{data_mod.resolve_data_path(data)}: no {split}-split post has at most "
                       f"{max_tokens} tokens")
    return posts


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of left-padded rows (as ``generate`` numbers them)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


class Policy(nn.Module):
    """A causal LM whose top blocks train, with a scalar value head on its last hidden state."""

    def __init__(self, lm: nn.Module, train_layers: int) -> None:
        super().__init__()
        self.lm = lm
        for p in lm.parameters():
            p.requires_grad_(False)
        base = lm.base_model
        for p in _layers(base)[-train_layers:].parameters() if train_layers else []:
            p.requires_grad_(True)
        norm = getattr(base, "norm", None)
        if train_layers and norm is not None:
            for p in norm.parameters():
                p.requires_grad_(True)
        self.value_head = nn.Linear(lm.config.hidden_size, 1)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, keep: int):
        """Logits and values of the last ``keep`` positions."""
        out = self.lm(input_ids=ids, attention_mask=mask, position_ids=positions(mask),
                      output_hidden_states=True, logits_to_keep=keep)
        values = self.value_head(out.hidden_states[-1][:, -keep:]).squeeze(-1)
        return out.logits, values

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return trainable_state(self)


class LabelerReward:
    """Direct RLAIF's reward: exactly the judge of an exported labeler config (``best.yaml``:
    ``prompt.judge`` with its prompt, few-shot exemplars, decoding and backend, through
    :class:`lab.label.Labeler`, as ``rlaif label``, ``rlaif rm label`` and ``rlaif winrate``
    use it), called as ``(posts, summaries) -> rewards`` like the reward model.

    * A judge that rates each response alone (:class:`lab.judges.rating.RatingJudge`: rating,
      self-reward): the summary's expected rating s, rescaled to [0, 1] by the judge's scale,
      ``(s - min) / (max - min)``, so every scale means the same.
    * Any other judge (pairwise, pairwise-tie, whatever reads both orders): p = P(the summary
      is better than the anchor), the anchor being the first summary (``pair.first``) of the
      data pair the run holds for that post (:func:`post_pairs`), labeled as the pair
      (summary, anchor) in the judge's chunks (``backend.batch_pairs``; the transformers
      backend packs a chunk into one pass).

    Labels go through an in-memory label cache (a summary sampled twice for a post, or a
    rating shared, costs nothing the second time; nothing is written to disk).
    """

    def __init__(self, path: str, anchors: Mapping[str, Pair]) -> None:
        """Args:
            path: the exported labeler config.
            anchors: the data pair of each post, by the post as ``prompts/post.jinja``
                renders it (what the scorer is called with).
        """
        from lab.backends import batch_pairs, make_backend
        from lab.config import RunConfig
        from lab.label import Labeler
        from lab.run import prepare

        config = RunConfig.load(path)
        self.path = str(path)
        self.labeler = Labeler(make_backend(config.backend), config.prompt, config.decode,
                               prepare(config)[2])
        self.judge = self.labeler.judge
        self.chunk = batch_pairs(config.backend)
        self.anchors = anchors
        self.rates = isinstance(self.judge, RatingJudge)

    @property
    def rule(self) -> str:
        """How a summary's reward comes about, in one line (``reward.json``, the run's note)."""
        what = f"the {self.judge.name} judge of {self.path}"
        if self.rates:
            lo, hi = min(self.judge.values), max(self.judge.values)
            return (f"{what} rates each summary alone; reward = (s - {lo}) / ({hi} - {lo}), s "
                    f"its expected rating over the scale tokens {lo}-{hi}")
        return (f"{what} compares each summary with the anchor, the first summary (pair.first) "
                "of the post's data pair; reward = p = P(summary better than the anchor): "
                f"{self.judge.aggregation}")

    def note(self) -> dict:
        """What ``reward.json`` records."""
        return {"reward": "labeler", "labeler": self.path, "judge": self.judge.name,
                "aggregation": self.judge.aggregation,
                "rule": "rescaled expected rating" if self.rates else "p against the anchor",
                "description": self.rule}

    def items(self, posts: list[str], summaries: list[str]) -> list[Pair]:
        """The pairs the judge labels: (summary, the post's anchor summary)."""
        out = []
        for i, (post, summary) in enumerate(zip(posts, summaries)):
            anchor = self.anchors.get(post)
            if anchor is None:
                raise RunError(f"direct RLAIF: a post with no data pair to label it by "
                               f"({post[:60]!r}...); score posts of the run's data")
            where = anchor.source or anchor.key
            out.append(dataclasses.replace(anchor, first=summary, second=anchor.first,
                                           key=f"{anchor.key}|a2c{i}",
                                           source=f"{where} (sampled summary vs its first)"))
        return out

    def __call__(self, posts: list[str], summaries: list[str]) -> torch.Tensor:
        pairs = self.items(posts, summaries)
        out: list[float] = []
        for i in range(0, len(pairs), self.chunk):
            chunk = pairs[i:i + self.chunk]
            if self.rates:
                lo, hi = min(self.judge.values), max(self.judge.values)
                out += [(s - lo) / (hi - lo) for s in self.labeler.ratings(chunk)]
            else:
                out += [r["p"] for r in self.labeler.label_many(chunk)]
        return torch.tensor(out, dtype=torch.float64)


def make_scorer(config: A2CConfig, anchors: Mapping[str, Pair] | None = None):
    """A function (posts, summaries) -> rewards: the reward model or, for direct RLAIF, the
    exported labeler's judge (:class:`LabelerReward`; ``anchors``: each post's data pair, by
    rendered post; default: every training-split post of ``config.data``)."""
    if config.reward == "rm":
        from lab.reward_model import load_reward_model

        if not config.rm_dir:
            raise RunError("reward=rm needs --rm DIR (a folder written by `rlaif rm train`)")
        rm = load_reward_model(config.rm_dir)
        return lambda posts, summaries: rm(posts, summaries).detach()
    if config.reward == "labeler":
        if not config.labeler:
            raise RunError("reward=labeler needs --labeler best.yaml")
        if anchors is None:
            anchors = anchors_of(post_pairs(config.data))
        return LabelerReward(config.labeler, anchors)
    raise RunError(f"reward must be rm or labeler, not {config.reward!r}")


def reward_note(config: A2CConfig, scorer) -> dict:
    """Which reward, judge and rule a run uses (``reward.json``)."""
    if isinstance(scorer, LabelerReward):
        return scorer.note()
    return {"reward": "rm", "rm_dir": config.rm_dir, "rule": "the reward model's score",
            "description": f"the score r(post, summary) of the reward model in {config.rm_dir}"}


def end_ids(lm, tokenizer) -> list[int]:
    """The tokens that end a response: the tokenizer's end-of-sequence token and every one
    the model's generation config stops on (chat models often list several)."""
    ids = getattr(getattr(lm, "generation_config", None), "eos_token_id", None)
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    return sorted({tokenizer.eos_token_id, *ids} - {None})


def ended(lm, tokenizer, response: torch.Tensor) -> torch.Tensor:
    """Where a response token is an end token (bool, the shape of ``response``)."""
    return torch.isin(response, torch.tensor(end_ids(lm, tokenizer)))


def generate(lm, tokenizer, prompts: list[str], max_new_tokens: int, temperature: float):
    """Sample (temperature > 0) or decode greedily; returns (ids, mask, prompt length)."""
    tokenizer.padding_side = "left"
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    sample = temperature > 0
    with torch.no_grad():
        out = lm.generate(**enc, max_new_tokens=max_new_tokens, do_sample=sample,
                          temperature=temperature if sample else None,
                          top_k=0 if sample else None, top_p=1.0 if sample else None,
                          pad_token_id=tokenizer.pad_token_id)
    start = enc["input_ids"].shape[1]
    response = out[:, start:]
    ends = ended(lm, tokenizer, response).long()
    done = torch.cumsum(ends, dim=1)
    # a response token counts up to and including its first end-of-sequence token
    resp_mask = (done - ends) == 0
    mask = torch.cat([enc["attention_mask"], resp_mask.long()], dim=1)
    return out, mask, start


def sampled_kl(lm, ref, tokenizer, posts: list[str], max_new_tokens: int,
               batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """KL(policy || start) per post, estimated from one summary sampled at temperature 1:
    the sum over its tokens of log pi(token) - log pi_ref(token) (nats per summary); and
    whether each sample was truncated. Seed torch first for a reproducible estimate."""
    kls, cut = [], []
    for i in range(0, len(posts), batch):
        prompts = [policy_prompt(tokenizer, p) for p in posts[i:i + batch]]
        ids, mask, start = generate(lm, tokenizer, prompts, max_new_tokens, 1.0)
        steps = ids.shape[1] - start
        resp, resp_mask = ids[:, start:], mask[:, start:].float()
        with torch.no_grad():
            lps = []
            for model in (lm, ref):
                logits = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask),
                               logits_to_keep=steps + 1).logits[:, :-1].float()
                lps.append(torch.log_softmax(logits, -1).gather(-1, resp[..., None])[..., 0])
        kls += ((lps[0] - lps[1]) * resp_mask).sum(1).tolist()
        cut += (~ended(lm, tokenizer, resp).any(1)).tolist()
    return np.array(kls), np.array(cut, bool)


def decode_summaries(tokenizer, ids: torch.Tensor, mask: torch.Tensor, start: int) -> list[str]:
    """The text of each response (up to its end-of-sequence token), stripped."""
    return [tokenizer.decode(row[start:][m[start:].bool()], skip_special_tokens=True).strip()
            for row, m in zip(ids, mask)]


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns over the response tokens."""
    adv = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0])
    steps = rewards.shape[1]
    for t in reversed(range(steps)):
        nonterminal = mask[:, t + 1] if t + 1 < steps else torch.zeros_like(last)
        next_value = values[:, t + 1] if t + 1 < steps else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value * nonterminal - values[:, t]
        last = delta + gamma * lam * nonterminal * last
        adv[:, t] = last
    return adv * mask, (adv + values) * mask


class RunningStats:
    """Running mean and variance of the scores (Welford), saved with the checkpoint."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, x: torch.Tensor) -> None:
        for v in x.tolist():
            self.n += 1
            d = v - self.mean
            self.mean += d / self.n
            self.m2 += d * (v - self.mean)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        std = (self.m2 / (self.n - 1)) ** 0.5 if self.n > 1 else 1.0
        return (x - self.mean) / (std + 1e-6)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def a2c_update(policy: Policy, ref: nn.Module, tokenizer, posts: list[str], scorer,
               opt: torch.optim.Optimizer, c: A2CConfig,
               stats: RunningStats | None = None) -> dict:
    """One rollout and one gradient step; returns the logged statistics."""
    prompts = [policy_prompt(tokenizer, p) for p in posts]
    ids, mask, start = generate(policy.lm, tokenizer, prompts, c.max_new_tokens, c.temperature)
    steps = ids.shape[1] - start
    resp_ids, resp_mask = ids[:, start:], mask[:, start:].float()
    truncated = ~ended(policy.lm, tokenizer, resp_ids).any(dim=1)
    summaries = decode_summaries(tokenizer, ids, mask, start)
    score = scorer(posts, summaries).float()
    logits, values = policy(ids, mask, steps + 1)
    logits = logits[:, :-1] / max(c.temperature, 1e-6)
    values = values[:, :-1]
    logp_all = torch.log_softmax(logits.float(), dim=-1)
    logp = logp_all.gather(-1, resp_ids[..., None]).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    with torch.no_grad():
        ref_logits = ref(input_ids=ids, attention_mask=mask, position_ids=positions(mask),
                         logits_to_keep=steps + 1).logits
        ref_logp = torch.log_softmax(ref_logits[:, :-1].float() / max(c.temperature, 1e-6), -1)
        ref_logp = ref_logp.gather(-1, resp_ids[..., None]).squeeze(-1)
        kl = (logp.detach() - ref_logp) * resp_mask
        rewards = -c.kl_coef * kl
        last = (resp_mask.sum(1).long() - 1).clamp(min=0)
        terminal = score
        if c.normalize_reward and stats is not None:
            stats.update(score)
            terminal = stats.normalize(score)
        terminal = terminal - c.missing_eos_penalty * truncated.float()
        rewards[torch.arange(len(posts)), last] += terminal
        adv, returns = gae(rewards, values.detach(), resp_mask, c.gamma, c.gae_lambda)
        mu, sd = masked_mean(adv, resp_mask), adv[resp_mask.bool()].std().nan_to_num(1.0)
        adv = (adv - mu) / (sd + 1e-8) * resp_mask
    pg_loss = -masked_mean(adv * logp, resp_mask)
    value_loss = 0.5 * masked_mean((values - returns) ** 2, resp_mask)
    ent = masked_mean(entropy, resp_mask)
    loss = pg_loss + c.vf_coef * value_loss - c.ent_coef * ent
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_([p for p in policy.parameters() if p.requires_grad],
                             c.max_grad_norm)
    opt.step()
    return {"reward": float(terminal.mean() - c.kl_coef * kl.sum(1).mean()),
            "score": float(score.mean()), "kl": float(kl.sum(1).mean()),
            "pg_loss": pg_loss.item(), "value_loss": value_loss.item(), "entropy": ent.item(),
            "length": float(resp_mask.sum(1).mean()),
            "truncated": float(truncated.float().mean())}


def load_policy(config: A2CConfig) -> tuple[Policy, nn.Module, object]:
    """(trainable policy, frozen reference, tokenizer) at the starting weights."""
    torch.set_flush_denormal(True)
    lm, tokenizer, _ = load_causal_lm(config.policy, torch.float32)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    ref = copy.deepcopy(lm).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    torch.manual_seed(config.seed)
    return Policy(lm, config.train_layers), ref, tokenizer


def train(config: A2CConfig, out: str | Path, progress: bool = True) -> list[dict]:
    """Run (or resume) A2C into the folder ``out``; returns the log rows."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
    if cfg_path.is_file():  # resuming: only the number of updates may grow
        old = {**json.loads(cfg_path.read_text()), "updates": config.updates}
        if old != dataclasses.asdict(config):
            raise RunError(f"{cfg_path} holds a different A2C config; use another --out "
                           "(only --updates may change, to train further)")
    write_json_atomic(cfg_path, dataclasses.asdict(config))
    policy, ref, tokenizer = load_policy(config)
    posts = training_posts(config.data, tokenizer, config.max_post_tokens)
    scorer = make_scorer(config, anchors_of(posts))
    note = reward_note(config, scorer)
    write_json_atomic(out / "reward.json", note)
    print(f"reward: {note['description']}", file=sys.stderr)
    opt = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=config.lr)
    rng = random.Random(config.seed)
    stats = RunningStats()
    log: list[dict] = []
    ckpt = out / "checkpoint.pt"
    if ckpt.is_file():
        saved = torch.load(ckpt, weights_only=False)
        policy.load_state_dict(saved["policy"], strict=False)
        opt.load_state_dict(saved["optimizer"])
        rng.setstate(saved["rng"])
        torch.set_rng_state(saved["torch_rng"])
        stats.__dict__.update(saved["reward_stats"])
        log = saved["log"]
    bar = tqdm(total=config.updates, initial=len(log), desc="a2c", unit="update",
               disable=not progress, file=sys.stderr)
    while len(log) < config.updates:
        t0 = time.perf_counter()
        batch = [text for _, text, _ in rng.sample(posts, min(config.batch_size, len(posts)))]
        row = a2c_update(policy, ref, tokenizer, batch, scorer, opt, config, stats)
        log.append({"update": len(log) + 1, **row, "seconds": time.perf_counter() - t0})
        write_csv_atomic(out / "log.csv", log, LOG_FIELDS)
        if len(log) % config.checkpoint_every == 0 or len(log) == config.updates:
            save_atomic(ckpt, {"policy": policy.trainable_state(), "optimizer": opt.state_dict(),
                               "rng": rng.getstate(), "torch_rng": torch.get_rng_state(),
                               "reward_stats": dict(stats.__dict__), "log": log})
        bar.update(1)
        bar.set_postfix(score=f"{row['score']:.3f}", kl=f"{row['kl']:.3f}")
    bar.close()
    from lab.plots import plot_a2c

    plot_a2c(log, out / "curves.png", config)
    from lab.machine import cpu_info

    write_json_atomic(out / "trend.json", {**score_trend(log), "dtype": "float32",
                                           "threads": torch.get_num_threads(), **cpu_info()})
    return log


def score_trend(log: list[dict], part: float = 0.2) -> dict:
    """Did the score rise? The least-squares slope of the per-update mean score against the
    update, with its standard error and a two-sided normal p, and the mean score of the first
    and of the last ``part`` of the updates with the difference's 95% CI (updates resampled
    within each part). Each update's score is the mean over its own freshly sampled posts."""
    from lab.stats import normal_two_sided_p

    y = np.array([r["score"] for r in log], float)
    x = np.arange(1, len(y) + 1, dtype=float)
    out: dict = {"updates": len(y)}
    if len(y) >= 3:
        xc = x - x.mean()
        slope = float((xc * (y - y.mean())).sum() / (xc * xc).sum())
        resid = y - y.mean() - slope * xc
        se = float(np.sqrt((resid ** 2).sum() / (len(y) - 2) / (xc * xc).sum()))
        out |= {"slope_per_update": slope, "slope_se": se,
                "slope_p": normal_two_sided_p(slope / se) if se > 0 else float("nan")}
    k = max(1, int(round(len(y) * part)))
    if len(y) >= 2 * k:
        first, last = y[:k], y[-k:]
        rng = np.random.default_rng(0)
        diffs = [rng.choice(last, k).mean() - rng.choice(first, k).mean() for _ in range(4000)]
        out |= {"k": k, "first_mean": float(first.mean()), "last_mean": float(last.mean()),
                "difference": float(last.mean() - first.mean()),
                "difference_ci": [float(np.percentile(diffs, 2.5)),
                                  float(np.percentile(diffs, 97.5))]}
    for key in ("truncated", "kl", "length"):
        if log and key in log[0] and len(y) >= 2 * k:
            v = np.array([float(r[key]) for r in log])
            out[f"{key}_first"], out[f"{key}_last"] = float(v[:k].mean()), float(v[-k:].mean())
    return out


def load_trained(folder: str | Path) -> tuple[Policy, nn.Module, object, A2CConfig]:
    """The trained policy of an A2C folder, with its reference and tokenizer."""
    folder = Path(folder)
    if not (folder / "checkpoint.pt").is_file():
        raise RunError(f"{folder}: no A2C checkpoint; run `rlaif rl train --out {folder}`")
    config = A2CConfig(**json.loads((folder / "config.json").read_text()))
    policy, ref, tokenizer = load_policy(config)
    saved = torch.load(folder / "checkpoint.pt", weights_only=False)
    policy.load_state_dict(saved["policy"], strict=False)
    return policy.eval(), ref, tokenizer, config
