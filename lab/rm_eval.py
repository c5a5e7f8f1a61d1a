"""Stage 10 of the pipeline: reward models scored against held-out human labels.

RLAIF Table 5 and Figure 5: pairwise accuracy on human-labeled comparisons of posts the reward
models never saw (the test split), for

  * the reward model trained on the AI labeler's soft labels (RLAIF),
  * the same model trained the same way on the human labels of the same training pairs (RLHF),
  * the length-only baseline (the longer summary wins),

each with a bootstrap 95% CI, also on the high-confidence subset, with the share of pairs in
which it prefers the longer summary (a reward model that learned only length shows up there).
The learning curve trains both kinds on seeded subsets of the training pairs.

Writes ``rm_eval.json``, ``rm_eval.md`` and ``rm_curve.png`` into the reward-model folder.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lab.data import HIGH_CONFIDENCE  # noqa: E402
from lab.label import word_count  # noqa: E402
from lab.metrics import agreement, bootstrap_ci  # noqa: E402
from lab.reward_model import (  # noqa: E402
    FeatureCache,
    RMConfig,
    load_reward_model,
    score_pairs,
    train_reward_model,
)
from lab.rm_labels import held_out_pairs, read_pairs  # noqa: E402
from lab.run import RunError, write_json_atomic  # noqa: E402


def _summary(correct: np.ndarray, longer: np.ndarray, high: np.ndarray) -> dict:
    lo, hi = bootstrap_ci(correct)
    hlo, hhi = bootstrap_ci(correct[high])
    return {"n": int(len(correct)), "accuracy": float(correct.mean()), "ci": [lo, hi],
            "n_high": int(high.sum()), "accuracy_high": float(correct[high].mean()),
            "ci_high": [hlo, hhi], "prefers_longer": float(longer.mean())}


def accuracy_of(model, rows: list[dict], cache: FeatureCache | None,
                progress: bool = False) -> dict:
    """Accuracy of a reward model's preference (r1 > r2) against the human labels."""
    r1, r2 = score_pairs(model, rows, cache, progress)
    p = np.where(r1.numpy() > r2.numpy(), 1.0, np.where(r1.numpy() < r2.numpy(), 0.0, 0.5))
    return _summary(agreement(p, _human(rows)), _longer_pick(rows, p), _high(rows))


def length_baseline(rows: list[dict]) -> dict:
    """The longer summary wins (a tie in length is half right)."""
    a = np.array([word_count(r["first"]) for r in rows])
    b = np.array([word_count(r["second"]) for r in rows])
    p = np.where(a > b, 1.0, np.where(a < b, 0.0, 0.5))
    return _summary(agreement(p, _human(rows)), _longer_pick(rows, p), _high(rows))


def _human(rows: list[dict]) -> np.ndarray:
    return np.array([r["human"] for r in rows])


def _high(rows: list[dict]) -> np.ndarray:
    return np.array([r["confidence"] in HIGH_CONFIDENCE for r in rows])


def _longer_pick(rows: list[dict], p: np.ndarray) -> np.ndarray:
    a = np.array([word_count(r["first"]) for r in rows])
    b = np.array([word_count(r["second"]) for r in rows])
    differ = a != b
    return ((p > 0.5) == (a > b))[differ & (p != 0.5)].astype(float)


def evaluate(folder: str | Path, curve: list[int] | None = None, progress: bool = True) -> dict:
    """Score ``folder/rm_ai`` and ``folder/rm_human`` (and the curve); write the report."""
    folder = Path(folder)
    test = held_out_pairs(folder)
    result = {"test_split": "test", "rows": []}
    cache = FeatureCache(folder / "features.pt")
    for labels in ("ai", "human"):
        sub = folder / f"rm_{labels}"
        if not (sub / "model.pt").is_file():
            raise RunError(f"{sub}: not trained; run `rlaif rm train {folder}` first")
        model = load_reward_model(sub)
        trained = json.loads((sub / "metrics.json").read_text())
        row = {"name": f"reward model on {'AI' if labels == 'ai' else 'human'} labels",
               "labels": labels,
               "n_train": trained["n_train"], **accuracy_of(model, test, cache, progress)}
        result["rows"].append(row)
    result["rows"].append({"name": "length-only baseline", "labels": "-", "n_train": 0,
                           **length_baseline(test)})
    labeler = folder / "label" / "metrics.json"
    if labeler.is_file():
        m = json.loads(labeler.read_text())
        result["labeler_on_training_pairs"] = {"n": m["n"], "alignment": m["alignment"],
                                               "alignment_ci": m["alignment_ci"]}
    if curve:
        full = [r for r in result["rows"] if r["labels"] in ("ai", "human")]
        result["curve"] = learning_curve(folder, curve, test, cache, full)
        plot_curve(result, folder / "rm_curve.png")
    write_json_atomic(folder / "rm_eval.json", result)
    (folder / "rm_eval.md").write_text(to_markdown(result))
    return result


def learning_curve(folder: Path, sizes: list[int], test: list[dict], cache: FeatureCache,
                   full: list[dict]) -> list[dict]:
    """Train both label kinds on seeded subsets (``folder/curve/``) and score each; the
    models trained on every pair (``full``: their rows of the table) end each curve."""
    rows = read_pairs(folder)
    points = []
    for labels in ("ai", "human"):
        base = RMConfig(**json.loads((folder / f"rm_{labels}" / "config.json").read_text()))
        for n in sorted(set(sizes)):
            if n >= len(rows):
                continue
            config = dataclasses.replace(base, n_train=n)
            sub = folder / "curve" / f"{labels}-{n}"
            trained = train_reward_model(rows, config, sub, cache, progress=False)
            acc = accuracy_of(load_reward_model(sub), test, cache)
            points.append({"labels": labels, "n_train": trained["n_train"], **acc})
        row = next(r for r in full if r["labels"] == labels)
        points.append({k: v for k, v in row.items() if k != "name"})
    return points


def plot_curve(result: dict, path: Path) -> None:
    """Accuracy on held-out human labels against training pairs (RLAIF Figure 5)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for labels, color in (("ai", "tab:blue"), ("human", "tab:orange")):
        pts = sorted((p for p in result["curve"] if p["labels"] == labels),
                     key=lambda p: p["n_train"])
        x = [p["n_train"] for p in pts]
        y = np.array([p["accuracy"] for p in pts])
        err = np.array([[p["accuracy"] - p["ci"][0], p["ci"][1] - p["accuracy"]] for p in pts]).T
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, color=color,
                    label=f"RM on {'AI' if labels == 'ai' else 'human'} labels")
    base = next(r for r in result["rows"] if r["name"] == "length-only baseline")
    ax.axhline(base["accuracy"], color="gray", ls="--", label="length-only baseline")
    ax.axhline(0.5, color="black", lw=0.5)
    ax.set_xscale("log")
    sizes = sorted({p["n_train"] for p in result["curve"]})
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()
    ax.set_xlabel("training pairs")
    ax.set_ylabel("accuracy on held-out human labels")
    n = result["rows"][0]["n"]
    ax.set_title(f"Reward-model accuracy vs training size (test split, n={n})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt_acc(a: float, ci: list[float]) -> str:
    return f"{a:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def to_markdown(result: dict) -> str:
    """The reward-model table (what ``rlaif rm eval`` prints)."""
    n, n_high = result["rows"][0]["n"], result["rows"][0]["n_high"]
    lines = [
        f"**Reward-model accuracy on held-out human labels (test split: {n} comparisons, "
        f"{n_high} high-confidence)**",
        "",
        "| model | training pairs | accuracy [95% CI] | high-confidence accuracy | "
        "prefers longer |",
        "|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['name']} | {r['n_train']} | {_fmt_acc(r['accuracy'], r['ci'])} | "
                     f"{_fmt_acc(r['accuracy_high'], r['ci_high'])} | "
                     f"{r['prefers_longer']:.3f} |")
    lab = result.get("labeler_on_training_pairs")
    if lab:
        lines += ["", f"The AI labeler agreed with the human labels of its {lab['n']} training "
                  f"pairs {_fmt_acc(lab['alignment'], lab['alignment_ci'])}."]
    return "\n".join(lines) + "\n"
