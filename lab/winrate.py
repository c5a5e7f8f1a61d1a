"""Stage 12 of the pipeline: win rates of trained policies, as RLAIF's Table 1 reports them.

Every policy (the starting policy and each A2C folder given, e.g. RLAIF and RLHF) summarises
the same held-out posts (a seeded sample of the test split, which no reward model or policy
saw), greedily, within the budget the policies were trained with. Every pair of policies
(each trained one against the start, and the trained ones against each other) is then judged
by every judge given:

  * a reward model (``rlaif rm train`` folder): p = sigmoid(r_a - r_b), which has no order;
  * a labeler (an exported ``best.yaml``): its judge (``prompt.judge``), exemplars and all,
    exactly as the labeler labels (the pairwise judges: both presentation orders averaged).

A judge that is the reward source of a policy (its reward model, or the labeler whose labels
trained that reward model) is marked in the table: its verdict on that policy is not
independent. A win is p > 0.5 + tolerance, a loss p < 0.5 - tolerance, and anything between,
or identical summaries, is a tie counted half. Beside the win rate and its 95% CI:

  * the length-controlled win rate: a logistic regression of the outcome on the difference in
    words (scaled by its standard deviation), read at a difference of zero;
  * how often the first policy's summary is longer, the mean words of each, and the shares of
    summaries cut at the token budget (truncated) and of empty summaries per policy;
  * the KL of each trained policy to the start on these posts, from one summary per post
    sampled at temperature 1 (nats per summary).

Writes ``winrate.json``, ``winrate.md``, ``summaries.jsonl`` and ``judgments.jsonl`` into the
output folder; summaries are reused by a rerun with the same policies and posts.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lab.a2c import (
    A2CConfig,
    decode_summaries,
    ended,
    generate,
    load_policy,
    load_trained,
    policy_prompt,
    sampled_kl,
    training_posts,
)
from lab.config import RunConfig
from lab.data import Pair
from lab.io import write_json_atomic, write_text_atomic
from lab.label import word_count
from lab.machine import cpu_info
from lab.metrics import bootstrap_ci
from lab.run import RunError
from lab.stats import logistic_regression

START = "start"
"""Name of the starting policy in tables."""
EXTRAPOLATED = 0.15
"""A length-controlled rate is flagged when fewer than this share of pairs lie on one side."""


@dataclass(frozen=True)
class Judge:
    """One judge of pairs of summaries."""

    name: str
    """How tables name it."""
    kind: str
    """``rm`` or ``labeler``."""
    path: str
    """The reward-model folder or the labeler config."""
    source_of: tuple[str, ...] = ()
    """Policies whose reward this judge produced (its verdicts on them are not independent)."""


def summarise(lm, tokenizer, posts: list[str], max_new_tokens: int, temperature: float = 0.0,
              batch: int = 8, progress: bool = False,
              desc: str = "summaries") -> tuple[list[str], list[bool]]:
    """Summaries of posts by a policy (greedy at temperature 0) and whether each was cut at
    ``max_new_tokens`` without ending."""
    out, cut = [], []
    for i in tqdm(range(0, len(posts), batch), desc=desc, disable=not progress,
                  file=sys.stderr):
        prompts = [policy_prompt(tokenizer, p) for p in posts[i:i + batch]]
        ids, mask, start = generate(lm, tokenizer, prompts, max_new_tokens, temperature)
        out += decode_summaries(tokenizer, ids, mask, start)
        cut += (~ended(lm, tokenizer, ids[:, start:]).any(1)).tolist()
    return out, cut


def _shared_settings(configs: dict[str, A2CConfig]) -> A2CConfig:
    """The A2C config the policies share (starting policy, data, budgets), or an error."""
    first_name, first = next(iter(configs.items()))
    for name, c in configs.items():
        for field in ("policy", "data", "max_new_tokens", "max_post_tokens"):
            if getattr(c, field) != getattr(first, field):
                raise RunError(f"policies {first_name} and {name} differ in {field} "
                               f"({getattr(first, field)!r} vs {getattr(c, field)!r}); win rates "
                               "compare policies trained from one start on one budget")
    return first


def _labeler_identity(config: RunConfig) -> tuple:
    """What makes two labelers the same source of labels: model, prompt and decoding (the same
    model with another prompt counts as another labeler)."""
    return ("ai", config.backend.model, config.prompt, config.decode)


def rm_label_source(rm_dir: str | Path, wanted_by: str) -> tuple:
    """Where a reward model's training labels came from: ("human", its pairs folder) or the
    identity of the labeler that made them (see :func:`_labeler_identity`)."""
    rm_dir = Path(rm_dir)
    cfg = rm_dir / "config.json"
    if not cfg.is_file():
        raise RunError(f"{wanted_by}: reward model {rm_dir} not found (no config.json); pass the "
                       "folder `rlaif rm train` wrote")
    labels = json.loads(cfg.read_text()).get("labels", "ai")
    if labels == "human":
        return ("human", str(rm_dir.resolve().parent))
    label_cfg = rm_dir.parent / "label" / "config.json"
    if not label_cfg.is_file():
        raise RunError(f"{wanted_by}: {label_cfg} not found, so the labeler that trained "
                       f"{rm_dir} is unknown; keep the reward model inside its `rlaif rm label` "
                       "folder")
    return _labeler_identity(RunConfig.load(label_cfg))


def reward_sources(judges: list[tuple[str, str, str]],
                   configs: dict[str, A2CConfig]) -> list[Judge]:
    """Judges with the policies each one produced the reward of: a judge depends on a policy
    whose reward came from the same labels (human labels of the same pairs, or one labeler's
    labels, through any reward model trained on them) or from the judge itself."""
    def policy_source(name: str, c: A2CConfig) -> tuple:
        if c.reward == "labeler":
            return _labeler_identity(RunConfig.load(c.labeler))
        return rm_label_source(c.rm_dir, f"policy {name}")

    sources = {name: policy_source(name, c) for name, c in configs.items()}
    out = []
    for name, kind, path in judges:
        own = (rm_label_source(path, f"judge {name}") if kind == "rm"
               else _labeler_identity(RunConfig.load(path)))
        out.append(Judge(name, kind, path, tuple(p for p, src in sources.items() if src == own)))
    return out


def _policy_summaries(policies: dict[str, str], shared: A2CConfig, texts: list[str],
                      progress: bool) -> dict[str, dict]:
    """Greedy summaries, truncation and (trained policies) sampled KL on the posts."""
    result = {}
    _, ref, tokenizer = load_policy(shared)
    torch.manual_seed(0)
    s, cut = summarise(ref, tokenizer, texts, shared.max_new_tokens, progress=progress,
                       desc=f"{START} policy")
    result[START] = {"summaries": s, "truncated": cut, "kl": [0.0] * len(texts)}
    for name, folder in policies.items():
        policy, ref, tokenizer, config = load_trained(folder)
        torch.manual_seed(0)
        s, cut = summarise(policy.lm, tokenizer, texts, config.max_new_tokens,
                           progress=progress, desc=f"{name} policy")
        torch.manual_seed(0)
        kl, _ = sampled_kl(policy.lm, ref, tokenizer, texts, config.max_new_tokens)
        result[name] = {"summaries": s, "truncated": cut, "kl": kl.tolist()}
        del policy, ref
    return result


@dataclass(frozen=True)
class _Post:
    """A held-out post: its id, its text as policies read it, and one of its data pairs."""

    post_id: str
    post: str
    pair: Pair


def _judge_fn(judge: Judge, progress: bool):
    """A function (posts, summaries a, summaries b) -> p that a is better, per post."""
    if judge.kind == "rm":
        from lab.reward_model import load_reward_model

        rm = load_reward_model(judge.path)

        def by_rm(posts_: list[_Post], a: list[str], b: list[str]) -> np.ndarray:
            posts = [p.post for p in posts_]
            with torch.no_grad():
                ra = torch.cat([rm(posts[i:i + 16], a[i:i + 16]) for i in range(0, len(a), 16)])
                rb = torch.cat([rm(posts[i:i + 16], b[i:i + 16]) for i in range(0, len(b), 16)])
            return torch.sigmoid(ra - rb).numpy().astype(float)

        return by_rm
    from lab import models
    from lab.backends import batch_pairs, make_backend
    from lab.cache import LabelCache
    from lab.label import Labeler
    from lab.run import prepare

    config = RunConfig.load(judge.path)
    labeler = Labeler(make_backend(config.backend), config.prompt, config.decode,
                      prepare(config)[2], cache=LabelCache(models.cache_dir() / "labels.sqlite"))

    chunk = batch_pairs(config.backend)

    def by_labeler(posts_: list[_Post], a: list[str], b: list[str]) -> np.ndarray:
        """Both orders of each pair, in the backend's chunks (each cached as it is done)."""
        shown = [dataclasses.replace(p.pair, first=x, second=y, key=f"{p.pair.key}|{i}")
                 for i, (p, x, y) in enumerate(zip(posts_, a, b))]
        out = []
        with tqdm(total=len(shown), desc=f"judge {judge.name}", file=sys.stderr,
                  disable=not progress) as bar:
            for i in range(0, len(shown), chunk):
                out += [r["p"] for r in labeler.label_many(shown[i:i + chunk])]
                bar.update(len(shown[i:i + chunk]))
        return np.array(out)

    return by_labeler


def outcome(p: np.ndarray, a: list[str], b: list[str], tolerance: float) -> np.ndarray:
    """1 (a wins), 0 (b wins) or 0.5 (tie: identical text or p within the tolerance of 0.5)."""
    same = np.array([x.strip() == y.strip() for x, y in zip(a, b)])
    win = np.where(p > 0.5 + tolerance, 1.0, np.where(p < 0.5 - tolerance, 0.0, 0.5))
    return np.where(same, 0.5, win)


def rate_with_ci(wins: np.ndarray) -> dict:
    """Mean outcome with a bootstrap 95% CI (posts resampled)."""
    if len(wins) == 0:
        return {"n": 0, "win_rate": float("nan"), "ci": [float("nan"), float("nan")]}
    lo, hi = bootstrap_ci(wins)
    return {"n": int(len(wins)), "win_rate": float(wins.mean()), "ci": [lo, hi]}


def length_controlled(wins: np.ndarray, words_a: np.ndarray, words_b: np.ndarray) -> dict:
    """Win rate at equal length: sigmoid of the intercept of a logistic regression of the
    outcome on the word difference (scaled by its sd), with a 95% CI from its standard error."""
    diff = (words_a - words_b).astype(float)
    sd = diff.std()
    if sd == 0:
        r = rate_with_ci(wins)
        return {"win_rate": r["win_rate"], "ci": r["ci"], "length_coef": float("nan"),
                "reason": "every pair has the same length difference"}
    fit = logistic_regression(np.column_stack([np.ones(len(diff)), diff / sd]), wins)
    if not fit["converged"]:
        return {"win_rate": float("nan"), "ci": [float("nan")] * 2,
                "length_coef": float("nan"), "reason": fit["reason"]}
    b0, se = fit["coef"][0], fit["se"][0]

    def sig(x: float) -> float:
        return float(1 / (1 + np.exp(-x)))

    return {"win_rate": sig(b0), "ci": [sig(b0 - 1.96 * se), sig(b0 + 1.96 * se)],
            "length_coef": fit["coef"][1], "length_p": fit["p"][1], "reason": ""}


def win_rates(out: str | Path, policies: dict[str, str], judges: list[tuple[str, str, str]],
              n: int = 64, seed: int = 0, tolerance: float = 1e-3,
              progress: bool = True) -> dict:
    """Judge every pair of policies with every judge; write the report into ``out``.

    Args:
        out: the output folder.
        policies: name -> A2C folder (``rlaif rl train --out``); the starting policy is theirs.
        judges: (name, ``rm`` or ``labeler``, reward-model folder or labeler config).
        n: held-out posts (seeded sample of the test split's posts within the post budget).
        seed: seed of that sample.
        tolerance: |p - 0.5| at most this is a tie.
        progress: show progress bars.
    """
    if not policies:
        raise RunError("winrate needs at least one --policy NAME=A2C_FOLDER")
    if not judges:
        raise RunError("winrate needs at least one judge (--judge-rm or --judge-labeler)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    configs = {}
    fields = {f.name for f in dataclasses.fields(A2CConfig)}
    for name, folder in policies.items():
        cfg = Path(folder) / "config.json"
        raw = json.loads(cfg.read_text()) if cfg.is_file() else None
        if not isinstance(raw, dict) or "policy" not in raw or not set(raw) <= fields:
            raise RunError(f"--policy {name}={folder}: not a folder `rlaif rl train` wrote (no "
                           "A2C config.json); pass an A2C run folder")
        if not (Path(folder) / "checkpoint.pt").is_file():
            raise RunError(f"--policy {name}={folder}: no A2C checkpoint yet; run `rlaif rl "
                           f"train --out {folder}` (a checkpoint is written every 10 updates)")
        configs[name] = A2CConfig(**raw)
    shared = _shared_settings(configs)
    judge_list = reward_sources(judges, configs)
    _, _, tokenizer = load_policy(dataclasses.replace(shared, train_layers=0))
    posts = training_posts(shared.data, tokenizer, shared.max_post_tokens, split="test")
    rng = np.random.default_rng(seed)
    chosen = [_Post(i, t, p) for i, t, p in
              (posts[k] for k in sorted(rng.choice(len(posts), min(n, len(posts)), False)))]
    texts = [c.post for c in chosen]
    setup = {"policies": {k: str(Path(v).resolve()) for k, v in policies.items()},
             "checkpoints": {k: (Path(v) / "checkpoint.pt").stat().st_mtime
                             for k, v in policies.items()},
             "posts": [c.post_id for c in chosen]}
    cached = out / "summaries.json"
    if cached.is_file() and json.loads(cached.read_text()).get("setup") == setup:
        summaries = json.loads(cached.read_text())["policies"]
    else:
        summaries = _policy_summaries(policies, shared, texts, progress)
        write_json_atomic(cached, {"setup": setup, "policies": summaries})
    names = [START, *policies]
    words = {k: np.array([word_count(s) for s in summaries[k]["summaries"]]) for k in names}
    comparisons = [(a, START) for a in policies] + [
        (a, b) for i, a in enumerate(policies) for b in list(policies)[i + 1:]]
    result: dict = {
        "start_policy": shared.policy, "n_posts": len(chosen), "tolerance": tolerance,
        "max_new_tokens": shared.max_new_tokens, "dtype": "float32", **cpu_info(),
        "policies": {k: {"folder": policies.get(k, ""),
                         "reward": "-" if k == START else configs[k].reward,
                         "mean_words": float(words[k].mean()),
                         "truncated": float(np.mean(summaries[k]["truncated"])),
                         "empty": float(np.mean([not x.strip()
                                                 for x in summaries[k]["summaries"]])),
                         "kl": float(np.mean(summaries[k]["kl"])),
                         "kl_ci": list(bootstrap_ci(np.array(summaries[k]["kl"])))
                         if k != START else [0.0, 0.0]} for k in names},
        "judges": [dataclasses.asdict(j) for j in judge_list], "rows": []}
    judgments = []
    for judge in judge_list:
        fn = _judge_fn(judge, progress)
        for a, b in comparisons:
            sa, sb = summaries[a]["summaries"], summaries[b]["summaries"]
            p = fn(chosen, sa, sb)
            wins = outcome(p, sa, sb, tolerance)
            result["rows"].append({
                "a": a, "b": b, "judge": judge.name,
                "independent": not ({a, b} & set(judge.source_of)),
                "source_of": [x for x in (a, b) if x in judge.source_of],
                **rate_with_ci(wins),
                "ties": int((wins == 0.5).sum()),
                "identical": int(sum(x.strip() == y.strip() for x, y in zip(sa, sb))),
                "a_longer": float(np.mean(words[a] > words[b])),
                "length_controlled": length_controlled(wins, words[a], words[b]),
            })
            judgments += [{"post_id": c.post_id, "a": a, "b": b, "judge": judge.name,
                           "p": float(pi), "outcome": float(w)}
                          for c, pi, w in zip(chosen, p, wins)]
    rows = [{"post_id": c.post_id, **{k: summaries[k]["summaries"][i] for k in names}}
            for i, c in enumerate(chosen)]
    write_text_atomic(out / "summaries.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    write_text_atomic(out / "judgments.jsonl",
                      "".join(json.dumps(r) + "\n" for r in judgments))
    write_json_atomic(out / "winrate.json", result)
    write_text_atomic(out / "winrate.md", to_markdown(result))
    return result


def _ci(x: float, ci: list[float]) -> str:
    if x != x:
        return "-"
    return f"{x:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def to_markdown(r: dict) -> str:
    """The win-rate tables (what ``rlaif winrate`` prints)."""
    lines = [
        f"**Win rates on {r['n_posts']} held-out posts (test split), greedy summaries of at most "
        f"{r['max_new_tokens']} tokens; ties (|p - 0.5| <= {r['tolerance']:g} or identical "
        "text) count half**",
        "",
        "| A vs B | judge | independent of both rewards | A wins [95% CI] | "
        "length-controlled [95% CI] | ties (identical) | A longer |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        ind = "yes" if row["independent"] else f"no: reward of {', '.join(row['source_of'])}"
        lc = row["length_controlled"]
        mark = "*" if min(row["a_longer"], 1 - row["a_longer"]) < EXTRAPOLATED else ""
        lines.append(f"| {row['a']} vs {row['b']} | {row['judge']} | {ind} | "
                     f"{_ci(row['win_rate'], row['ci'])} | {_ci(lc['win_rate'], lc['ci'])}{mark} | "
                     f"{row['ties']} ({row['identical']}) | {row['a_longer']:.2f} |")
    lines += ["", "| policy | reward | mean words | truncated at the budget | empty | "
              "KL to start, nats/summary [95% CI] |", "|---|---|---|---|---|---|"]
    for name, p in r["policies"].items():
        lines.append(f"| {name} | {p['reward']} | {p['mean_words']:.1f} | {p['truncated']:.2f} | "
                     f"{p['empty']:.2f} | {_ci(p['kl'], p['kl_ci'])} |")
    lines += ["", "Length-controlled: a logistic regression of the outcome on the difference in "
              "words, read at equal length; * where fewer than "
              f"{EXTRAPOLATED:.0%} of the pairs have A longer (or shorter), so equal length lies "
              "outside most of the data and the rate is an extrapolation. KL: one summary per "
              "post sampled at temperature 1."]
    return "\n".join(lines) + "\n"
