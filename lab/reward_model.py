"""Stage 9 of the pipeline: the reward model, trained on soft preference labels.

RLAIF section 2.3: a reward model r(post, summary) is trained so that the softmax of the two
rewards of a pair matches the label's preference distribution. With soft AI labels p (the
probability that the first summary is better) the loss is the cross-entropy

    L = -[ p log s(r1 - r2) + (1 - p) log s(r2 - r1) ],      s = sigmoid,

which for a hard human label (p in {0, 1}) is the usual Bradley-Terry loss.

The default backbone is the packaged ``all-minilm-l6-v2`` encoder reading ``post [SEP] summary``
and mean-pooling the summary's tokens (which attend to the post); a causal LM reading the same
pair and pooling its last token is the option (``kind="causal"``). ``train_layers`` top layers
are fine-tuned; with 0 (the default, what fits 2 CPU cores) the backbone is frozen, its pooled
features are computed once into a cache file, and only the scalar head trains.
Training is seeded, keeps a validation split (by post), stops early on the validation accuracy
(against the labels it trains on, so the rule is the same for AI and human labels; the
validation loss of near-0.5 soft labels has a floor that is reached at once) and checkpoints
every epoch; a killed run resumes from its last epoch.

Label kinds (``labels``): ``ai`` (the labeler's soft labels), ``ai_hard`` (the same rounded to
0 or 1), ``ai_calibrated`` (temperature-scaled, :mod:`lab.calibration`) and ``human``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from annotated_types import Ge, Gt, Lt
from torch import nn
from tqdm import tqdm

from lab import models
from lab.run import RunError, write_csv_atomic, write_json_atomic


@dataclass(frozen=True)
class RMConfig:
    """How a reward model is built and trained."""

    backbone: str = "all-minilm-l6-v2"
    """Encoder catalog name, folder or hub id; with ``kind="causal"`` a causal LM name."""
    kind: str = "encoder"
    """``encoder`` (mean of the summary's tokens) or ``causal`` (last token)."""
    labels: str = "ai"
    """``ai`` (raw soft labels), ``ai_hard`` (rounded), ``ai_calibrated`` (temperature-scaled)
    or ``human`` (the RLHF baseline)."""
    train_layers: int = 0
    """Top backbone layers fine-tuned; 0 freezes the backbone and caches its features."""
    head_hidden: int = 256
    """Hidden width of the scalar head (0: a linear head)."""
    max_tokens: int = 256
    """Tokens per (post, summary) input; the post is truncated, never the summary."""
    epochs: int = 40
    """Most passes over the training pairs."""
    batch_size: int = 32
    """Pairs per step."""
    lr: float = 1e-3
    """Learning rate of the head."""
    backbone_lr: float = 3e-5
    """Learning rate of the fine-tuned backbone layers."""
    val_fraction: float = 0.15
    """Share of training posts held out for early stopping."""
    patience: int = 5
    """Epochs without a better validation score (see ``stop_on``) before stopping."""
    stop_on: str = "accuracy"
    """``accuracy``: keep the epoch with the best validation accuracy against the training
    labels (ties: the lower loss); ``loss``: the lowest validation loss; ``none``: train all
    ``epochs`` and keep the last (a fixed budget)."""
    n_train: int | None = None
    """Train on a seeded sample of at most n pairs (learning curves); None: all."""
    seed: int = 0
    """Seed of the sample, the split, the initialisation and the batch order."""


LIMITS = {
    "kind": Literal["encoder", "causal"],
    "labels": Literal["ai", "ai_hard", "ai_calibrated", "human"],
    "stop_on": Literal["accuracy", "loss", "none"],
    "train_layers": [Ge(0)], "head_hidden": [Ge(0)], "max_tokens": [Ge(8)], "epochs": [Ge(1)],
    "batch_size": [Ge(1)], "lr": [Gt(0)], "backbone_lr": [Gt(0)],
    "val_fraction": [Gt(0), Lt(1)], "patience": [Ge(1)], "n_train": [Ge(1)],
}
"""Ranges and choices of :class:`RMConfig` values (checked by :func:`lab.typed.build`)."""


LABEL_KINDS = ("ai", "ai_hard", "ai_calibrated", "human")
"""What a reward model can train on (the ``labels`` field)."""


def target(row: dict, labels: str) -> float:
    """The training label of a ``pairs.jsonl`` row: probability that ``first`` is better."""
    if labels == "ai_hard":
        return 1.0 if row["ai"] > 0.5 else 0.0 if row["ai"] < 0.5 else 0.5
    if labels not in row:
        fix = (" (no calibration: see calibration.json; label more pool pairs)"
               if labels == "ai_calibrated" else "")
        raise RunError(f"pairs.jsonl: row {row.get('key')} has no {labels!r} label{fix}")
    return float(row[labels])


def soft_label_loss(r_first: torch.Tensor, r_second: torch.Tensor,
                    p_first: torch.Tensor) -> torch.Tensor:
    """Cross-entropy between softmax([r1, r2]) and the soft label [p, 1 - p], batch mean."""
    logp = torch.log_softmax(torch.stack([r_first, r_second], dim=-1), dim=-1)
    return -(p_first * logp[..., 0] + (1 - p_first) * logp[..., 1]).mean()


def _layers(backbone: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks (BERT ``encoder.layer``, Llama/Qwen ``layers``)."""
    n = backbone.config.num_hidden_layers
    for module in backbone.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return module
    raise RunError(f"cannot find the {n} transformer layers of {type(backbone).__name__}")


def load_backbone(config: RMConfig):
    """(backbone without LM head, tokenizer, identity) for a config."""
    import transformers

    if config.kind == "causal":
        from lab.backends.hf import load_causal_lm

        lm, tokenizer, identity = load_causal_lm(config.backbone, torch.float32)
        backbone = lm.base_model
    elif config.kind == "encoder":
        source = config.backbone
        if source in models.ENCODERS:
            source = str(models.encoder_folder(source))
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(source)
            backbone = transformers.AutoModel.from_pretrained(source, dtype=torch.float32)
        except OSError as err:
            raise RunError(f"could not load encoder {config.backbone}: "
                           f"{str(err).splitlines()[0]} (see `rlaif models list`)") from None
        identity = f"{config.backbone}@{Path(source).name}"
    else:
        raise RunError(f"reward model kind must be encoder or causal, not {config.kind!r}")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return backbone, tokenizer, identity


class RewardModel(nn.Module):
    """A backbone that reads (post, summary) and a head that returns one scalar reward."""

    def __init__(self, config: RMConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone, self.tokenizer, self.identity = load_backbone(config)
        width = self.backbone.config.hidden_size
        h = config.head_hidden
        self.head = (nn.Sequential(nn.Linear(width, h), nn.GELU(), nn.Linear(h, 1)) if h
                     else nn.Linear(width, 1))
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        if config.train_layers:
            for p in _layers(self.backbone)[-config.train_layers:].parameters():
                p.requires_grad_(True)

    @property
    def frozen(self) -> bool:
        """Whether the backbone is frozen (features can be cached)."""
        return self.config.train_layers == 0

    def features(self, posts: list[str], summaries: list[str]) -> torch.Tensor:
        """Pooled backbone features of each (post, summary) input, shape [batch, width]."""
        enc = self.tokenizer(posts, summaries, truncation="only_first", padding=True,
                             max_length=self.config.max_tokens, return_tensors="pt")
        mask = enc["attention_mask"]
        inputs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask",
                                                        "token_type_ids")}
        hidden = self.backbone(**inputs).last_hidden_state
        if self.config.kind == "causal":
            last = mask.sum(dim=1) - 1
            return hidden[torch.arange(hidden.shape[0]), last]
        summary = torch.tensor([[s == 1 for s in enc.sequence_ids(i)]
                                for i in range(len(posts))], dtype=hidden.dtype)
        summary = summary * mask
        return (hidden * summary[..., None]).sum(1) / summary.sum(1, keepdim=True).clamp(min=1)

    def forward(self, posts: list[str], summaries: list[str]) -> torch.Tensor:
        """Rewards, shape [batch]."""
        return self.head(self.features(posts, summaries)).squeeze(-1)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The parameters that training changes (what a checkpoint holds)."""
        return trainable_state(self)


def trainable_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the parameters of ``module`` that require gradients."""
    names = {n for n, p in module.named_parameters() if p.requires_grad}
    return {k: v.detach().clone() for k, v in module.state_dict().items() if k in names}


class FeatureCache:
    """Pooled features of frozen backbones, keyed by backbone and input text, in one file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.stores: dict[str, dict[str, torch.Tensor]] = {}
        if path is not None and path.is_file():
            self.stores = torch.load(path)

    @staticmethod
    def key(post: str, summary: str) -> str:
        return hashlib.sha256(f"{post}\x00{summary}".encode()).hexdigest()[:20]

    @torch.no_grad()
    def get(self, model: RewardModel, posts: list[str], summaries: list[str],
            progress: bool = False, batch: int = 16) -> torch.Tensor:
        """Features of each input, computing (and saving) only the missing ones."""
        c = model.config
        store = self.stores.setdefault(f"{model.identity}|{c.kind}|{c.max_tokens}", {})
        keys = [self.key(p, s) for p, s in zip(posts, summaries)]
        todo = sorted({k: (p, s) for k, p, s in zip(keys, posts, summaries)
                       if k not in store}.items())
        for i in tqdm(range(0, len(todo), batch), desc="rm features", unit="batch",
                      disable=not progress or not todo, file=sys.stderr):
            chunk = todo[i:i + batch]
            feats = model.features([p for _, (p, _) in chunk], [s for _, (_, s) in chunk])
            store.update({k: f.clone() for (k, _), f in zip(chunk, feats)})
        if todo and self.path is not None:
            save_atomic(self.path, self.stores)
        return torch.stack([store[k] for k in keys])


def score_pairs(model: RewardModel, rows: list[dict], cache: FeatureCache | None = None,
                progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards of the first and of the second summary of each row."""
    posts = [r["post"] for r in rows] * 2
    summaries = [r["first"] for r in rows] + [r["second"] for r in rows]
    model.eval()
    with torch.no_grad():
        if model.frozen and cache is not None:
            rewards = model.head(cache.get(model, posts, summaries, progress)).squeeze(-1)
        else:
            rewards = torch.cat([model(posts[i:i + 16], summaries[i:i + 16])
                                 for i in range(0, len(posts), 16)])
    return rewards[:len(rows)], rewards[len(rows):]


def split_rows(rows: list[dict], config: RMConfig) -> tuple[list[dict], list[dict]]:
    """(train, validation) by post id, after the seeded ``n_train`` sample."""
    rows = sorted(rows, key=lambda r: r["key"])
    if config.n_train is not None and config.n_train < len(rows):
        rows = random.Random(config.seed).sample(rows, config.n_train)

    def held(r: dict) -> bool:
        h = hashlib.sha256(f"{config.seed}:{r['post_id']}".encode()).hexdigest()
        return int(h[:8], 16) / 0xFFFFFFFF < config.val_fraction

    train = [r for r in rows if not held(r)]
    val = [r for r in rows if held(r)] or train[:1]
    return train, val


def _pass(model: RewardModel, rows: list[dict], config: RMConfig, cache: FeatureCache | None,
          opt: torch.optim.Optimizer | None, rng: random.Random | None) -> tuple[float, float]:
    """One epoch (training when ``opt`` is given): (mean loss, accuracy against the labels;
    a label of exactly 0.5 counts in the loss, not in the accuracy)."""
    order = list(range(len(rows)))
    if rng is not None:
        rng.shuffle(order)
    model.train(opt is not None)
    total, correct, count, decided_count = 0.0, 0.0, 0, 0
    for i in range(0, len(order), config.batch_size):
        batch = [rows[j] for j in order[i:i + config.batch_size]]
        y = torch.tensor([target(r, config.labels) for r in batch], dtype=torch.float32)
        with torch.set_grad_enabled(opt is not None):
            r1, r2 = _rewards(model, batch, cache)
            loss = soft_label_loss(r1, r2, y)
        if opt is not None:
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            opt.step()
        total += loss.item() * len(batch)
        decided = y != 0.5
        correct += ((r1 > r2) == (y > 0.5))[decided].float().sum().item()
        count += len(batch)
        decided_count += int(decided.sum())
    return total / count, correct / decided_count if decided_count else float("nan")


def _rewards(model: RewardModel, batch: list[dict], cache: FeatureCache | None):
    posts = [r["post"] for r in batch] * 2
    summaries = [r["first"] for r in batch] + [r["second"] for r in batch]
    if model.frozen and cache is not None:
        r = model.head(cache.get(model, posts, summaries)).squeeze(-1)
    else:
        r = model(posts, summaries)
    return r[:len(batch)], r[len(batch):]


def train_reward_model(rows: list[dict], config: RMConfig, out: str | Path,
                       cache: FeatureCache | None = None, progress: bool = True) -> dict:
    """Train (or resume training) a reward model on ``rows`` into the folder ``out``.

    Writes ``config.json``, ``log.csv`` (per epoch: train and validation loss and accuracy),
    ``checkpoint.pt`` (last epoch, to resume), ``model.pt`` (the kept epoch, see
    ``RMConfig.stop_on``) and ``metrics.json``. Returns the metrics.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
    if cfg_path.is_file() and json.loads(cfg_path.read_text()) != dataclasses.asdict(config):
        raise RunError(f"{cfg_path} holds a different reward-model config; use another folder")
    write_json_atomic(cfg_path, dataclasses.asdict(config))
    if (out / "metrics.json").is_file():
        return json.loads((out / "metrics.json").read_text())
    train, val = split_rows(rows, config)
    torch.manual_seed(config.seed)
    model = RewardModel(config)
    if cache is None and model.frozen:
        cache = FeatureCache()
    if model.frozen:  # compute every feature once, up front, with a progress bar
        both = train + val
        cache.get(model, [r["post"] for r in both] * 2,
                  [r["first"] for r in both] + [r["second"] for r in both], progress)
    groups = [{"params": list(model.head.parameters()), "lr": config.lr}]
    tuned = [p for p in model.backbone.parameters() if p.requires_grad]
    if tuned:
        groups.append({"params": tuned, "lr": config.backbone_lr})
    opt = torch.optim.AdamW(groups, weight_decay=0.01)
    rng = random.Random(config.seed)
    state = {"epoch": 0, "best": None, "best_epoch": 0, "since_best": 0, "history": []}
    ckpt = out / "checkpoint.pt"
    if ckpt.is_file():
        saved = torch.load(ckpt, weights_only=False)
        model.load_state_dict(saved["model"], strict=False)
        opt.load_state_dict(saved["optimizer"])
        rng.setstate(saved["rng"])
        state = saved["state"]
    bar = tqdm(total=config.epochs, initial=state["epoch"], desc=f"rm ({config.labels})",
               unit="epoch", disable=not progress, file=sys.stderr)
    while state["epoch"] < config.epochs and state["since_best"] < config.patience:
        train_loss, train_acc = _pass(model, train, config, cache, opt, rng)
        val_loss, val_acc = _pass(model, val, config, cache, None, None)
        state["epoch"] += 1
        state["history"].append({"epoch": state["epoch"], "train_loss": train_loss,
                                 "train_acc": train_acc, "val_loss": val_loss,
                                 "val_acc": val_acc})
        score = _stop_score(config.stop_on, val_loss, val_acc)
        if state["best"] is None or _better(score, state["best"]):
            state["best"], state["best_epoch"], state["since_best"] = score, state["epoch"], 0
            save_atomic(out / "model.pt", model.trainable_state())
        elif config.stop_on != "none":
            state["since_best"] += 1
        save_atomic(ckpt, {"model": model.trainable_state(), "optimizer": opt.state_dict(),
                     "rng": rng.getstate(), "state": state})
        bar.update(1)
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
    bar.close()
    write_csv_atomic(out / "log.csv", state["history"], list(state["history"][0]))
    best = state["history"][state["best_epoch"] - 1]
    result = {"labels": config.labels, "seed": config.seed, "stop_on": config.stop_on,
              "n_train": len(train), "n_val": len(val),
              "epochs": state["epoch"], "best_epoch": best["epoch"],
              "val_loss": best["val_loss"], "val_acc": best["val_acc"],
              "backbone": model.identity}
    write_json_atomic(out / "metrics.json", result)
    return result


def _stop_score(stop_on: str, val_loss: float, val_acc: float) -> tuple[float, float]:
    """What early stopping maximises (compared as a tuple)."""
    if stop_on == "accuracy":
        return (-1.0 if val_acc != val_acc else val_acc, -val_loss)
    if stop_on == "loss":
        return (-val_loss, 0.0)
    return (0.0, 0.0)  # none: every epoch is as good, the last one is kept


def _better(score: tuple[float, float], best: list | tuple) -> bool:
    """Strictly better by more than rounding noise (or, with ``none``, always)."""
    if score == (0.0, 0.0) and tuple(best) == (0.0, 0.0):
        return True
    if score[0] > best[0] + 1e-6:
        return True
    return abs(score[0] - best[0]) <= 1e-6 and score[1] > best[1] + 1e-6


def save_atomic(path: Path, obj) -> None:
    """``torch.save`` to a temp file beside ``path`` and rename it into place."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def load_reward_model(folder: str | Path) -> RewardModel:
    """A trained reward model from its folder (config.json + model.pt)."""
    folder = Path(folder)
    if not (folder / "model.pt").is_file():
        raise RunError(f"{folder}: no trained reward model; run `rlaif rm train` first")
    config = RMConfig(**json.loads((folder / "config.json").read_text()))
    model = RewardModel(config)
    model.load_state_dict(torch.load(folder / "model.pt"), strict=False)
    return model.eval()
