"""Stage 10 of the pipeline: reward models scored against held-out human labels.

RLAIF Table 5 and Figure 5: pairwise accuracy on human-labeled comparisons of posts the reward
models never saw (the test split), for every reward model ``rlaif rm train`` wrote into the
folder: one per label kind (raw AI soft labels, AI labels rounded, temperature-scaled AI
labels, human labels of the same training pairs) and seed. Beside each:

  * the accuracy with a 95% CI that resamples whole posts (a post can appear in several pairs),
    also on the high-confidence subset;
  * the length-balanced accuracy (the mean of the accuracy on pairs where the human chose the
    longer summary and on pairs where they chose the shorter; "pick the longer" scores 0.5) and
    the share of pairs where the model prefers the longer summary;
  * the mean and the spread (sd, min-max) over the seeds;
  * an exact McNemar test of every AI-label kind against the human-label model (seed 0, same
    pairs), Holm-corrected, with the minimum difference the pairs could detect;
  * the length-only baseline on the same pairs.

The learning curve trains each kind (seed 0) on seeded subsets of the training pairs.
Writes ``rm_eval.json``, ``rm_eval.md`` and ``rm_curve.png`` into the reward-model folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lab.data import HIGH_CONFIDENCE  # noqa: E402
from lab.label import word_count  # noqa: E402
from lab.metrics import agreement, length_balanced  # noqa: E402
from lab.reward_model import (  # noqa: E402
    LABEL_KINDS,
    FeatureCache,
    RMConfig,
    load_reward_model,
    score_pairs,
    train_reward_model,
)
from lab.rm_labels import held_out_pairs, read_pairs  # noqa: E402
from lab.run import RunError, write_json_atomic  # noqa: E402
from lab.stats import cluster_bootstrap_ci, holm, mcnemar_exact, mdd_paired  # noqa: E402

KIND_NAMES = {"ai": "AI labels, raw soft", "ai_hard": "AI labels, rounded to 0/1",
              "ai_calibrated": "AI labels, temperature-scaled", "human": "human labels"}
"""How each label kind is named in tables and plots."""


def model_folder(folder: Path, labels: str, seed: int) -> Path:
    """Where ``rlaif rm train`` puts the reward model of a label kind and seed."""
    return folder / (f"rm_{labels}" if seed == 0 else f"rm_{labels}_seed{seed}")


def trained_models(folder: Path) -> list[tuple[str, int, Path]]:
    """(label kind, seed, folder) of every trained reward model in ``folder``, in table order."""
    found = []
    for sub in folder.iterdir():
        m = re.fullmatch(r"rm_(ai|ai_hard|ai_calibrated|human)(?:_seed(\d+))?", sub.name)
        if m and (sub / "model.pt").is_file():
            found.append((m[1], int(m[2] or 0), sub))
    return sorted(found, key=lambda t: (LABEL_KINDS.index(t[0]), t[1]))


def pair_scores(p: np.ndarray, rows: list[dict]) -> dict:
    """Per-pair arrays for a preference p (1 first, 0 second, 0.5 tie) on ``rows``:
    agreement with the human, whether the longer summary was picked, and the strata."""
    a = np.array([word_count(r["first"]) for r in rows])
    b = np.array([word_count(r["second"]) for r in rows])
    human = np.array([r["human"] for r in rows], float)
    differ = a != b
    first_longer = (a > b).astype(float)
    picks_longer = np.where(p == 0.5, 0.5, (p > 0.5) == (a > b)).astype(float)
    human_longer = np.where(a > b, human, 1 - human)
    return {"correct": agreement(p, human), "differ": differ, "picks_longer": picks_longer,
            "human_longer": human_longer, "first_longer": first_longer,
            "high": np.array([r["confidence"] in HIGH_CONFIDENCE for r in rows]),
            "post": np.array([r["post_id"] for r in rows])}


def summary(p: np.ndarray, rows: list[dict]) -> dict:
    """Accuracy (cluster CI), high-confidence accuracy, length-balanced accuracy (cluster CI)
    and the share of pairs where the longer summary is preferred."""
    s = pair_scores(p, rows)
    correct, post, high, d = s["correct"], s["post"], s["high"], s["differ"]

    def lb(idx: np.ndarray) -> float:
        idx = idx[d[idx]]
        return length_balanced(s["picks_longer"][idx], s["human_longer"][idx])

    every = np.arange(len(rows))
    hi_idx = np.flatnonzero(high)
    return {
        "n": int(len(rows)), "n_posts": int(len(set(post.tolist()))),
        "accuracy": float(correct.mean()),
        "ci": list(cluster_bootstrap_ci(lambda i: float(correct[i].mean()), post)),
        "n_high": int(high.sum()), "accuracy_high": float(correct[high].mean()),
        "ci_high": list(cluster_bootstrap_ci(lambda i: float(correct[hi_idx][i].mean()),
                                             post[hi_idx])),
        "length_balanced": lb(every),
        "length_balanced_ci": list(cluster_bootstrap_ci(lb, post)),
        "prefers_longer": float(s["picks_longer"][d].mean()) if d.any() else float("nan"),
    }


def rm_preference(model, rows: list[dict], cache: FeatureCache | None,
                  progress: bool = False) -> np.ndarray:
    """1 where the reward model scores the first summary higher, 0 lower, 0.5 equal."""
    r1, r2 = (t.numpy() for t in score_pairs(model, rows, cache, progress))
    return np.where(r1 > r2, 1.0, np.where(r1 < r2, 0.0, 0.5))


def length_preference(rows: list[dict]) -> np.ndarray:
    """The length-only labeler: the longer summary wins (equal length: 0.5)."""
    a = np.array([word_count(r["first"]) for r in rows])
    b = np.array([word_count(r["second"]) for r in rows])
    return np.where(a > b, 1.0, np.where(a < b, 0.0, 0.5))


def compare(p_a: np.ndarray, p_b: np.ndarray, rows: list[dict]) -> dict:
    """Exact McNemar test of two preferences' agreement with the humans on the same pairs
    (ties count half, so a pair is discordant when the two agreements differ)."""
    human = np.array([r["human"] for r in rows], float)
    ca, cb = agreement(p_a, human), agreement(p_b, human)
    b = int((ca > cb).sum())
    c = int((ca < cb).sum())
    n = len(rows)
    return {"difference": float(ca.mean() - cb.mean()), "a_better": b, "b_better": c,
            "p": mcnemar_exact(b, c), "mdd": mdd_paired(n, (b + c) / n) if n else float("nan")}


def evaluate(folder: str | Path, curve: list[int] | None = None, progress: bool = True) -> dict:
    """Score every reward model of ``folder`` (and the curve); write the report."""
    folder = Path(folder)
    models = trained_models(folder)
    if not models:
        raise RunError(f"{folder}: no trained reward model; run `rlaif rm train {folder}` first")
    test = held_out_pairs(folder)
    cache = FeatureCache(folder / "features.pt")
    result: dict = {"test_split": "test", "rows": [], "kinds": [], "tests": []}
    prefs: dict[tuple[str, int], np.ndarray] = {}
    for labels, seed, sub in models:
        trained = json.loads((sub / "metrics.json").read_text())
        prefs[labels, seed] = rm_preference(load_reward_model(sub), test, cache, progress)
        result["rows"].append({"name": f"RM on {KIND_NAMES[labels]}", "labels": labels,
                               "seed": seed, "folder": sub.name, "n_train": trained["n_train"],
                               "best_epoch": trained["best_epoch"], "epochs": trained["epochs"],
                               **summary(prefs[labels, seed], test)})
    result["rows"].append({"name": "length-only baseline", "labels": "-", "seed": None,
                           "folder": "", "n_train": 0, "best_epoch": None, "epochs": None,
                           **summary(length_preference(test), test)})
    for labels in dict.fromkeys(t[0] for t in models):
        accs = [r["accuracy"] for r in result["rows"] if r["labels"] == labels]
        lbs = [r["length_balanced"] for r in result["rows"] if r["labels"] == labels]
        result["kinds"].append({
            "labels": labels, "name": KIND_NAMES[labels], "seeds": len(accs),
            "accuracy_mean": float(np.mean(accs)),
            "accuracy_sd": float(np.std(accs, ddof=1)) if len(accs) > 1 else float("nan"),
            "accuracy_min": float(min(accs)), "accuracy_max": float(max(accs)),
            "length_balanced_mean": float(np.mean(lbs))})
    if ("human", 0) in prefs:
        tests = [{"a": labels, "b": "human", **compare(prefs[labels, 0], prefs["human", 0], test)}
                 for labels in LABEL_KINDS if labels != "human" and (labels, 0) in prefs]
        for t, p_holm in zip(tests, holm([t["p"] for t in tests])):
            t["p_holm"] = p_holm
        result["tests"] = tests
    labeler = folder / "label" / "metrics.json"
    if labeler.is_file():
        m = json.loads(labeler.read_text())
        result["labeler_on_training_pairs"] = {"n": m["n"], "alignment": m["alignment"],
                                               "alignment_ci": m["alignment_ci"]}
    calib = folder / "calibration.json"
    if calib.is_file():
        result["calibration"] = {k: v for k, v in json.loads(calib.read_text()).items()
                                 if k in ("scale", "n_fit", "fit_split", "reason")}
    if curve:
        result["curve"] = learning_curve(folder, curve, test, cache, result["rows"])
        plot_curve(result, folder / "rm_curve.png")
    write_json_atomic(folder / "rm_eval.json", result)
    (folder / "rm_eval.md").write_text(to_markdown(result))
    return result


def learning_curve(folder: Path, sizes: list[int], test: list[dict], cache: FeatureCache,
                   full: list[dict]) -> list[dict]:
    """Train each label kind (seed 0) on seeded subsets (``folder/curve/``) and score each;
    the seed-0 models trained on every pair (their rows in ``full``) end each curve."""
    rows = read_pairs(folder)
    points = []
    for row in (r for r in full if r["seed"] == 0):
        labels = row["labels"]
        base = RMConfig(**json.loads((folder / row["folder"] / "config.json").read_text()))
        for n in sorted(set(sizes)):
            if n >= len(rows):
                continue
            config = dataclasses.replace(base, n_train=n)
            # named by the config too: a retrained seed-0 model gets new curve folders
            digest = hashlib.sha256(json.dumps(dataclasses.asdict(config),
                                               sort_keys=True).encode()).hexdigest()[:8]
            sub = folder / "curve" / f"{labels}-{n}-{digest}"
            trained = train_reward_model(rows, config, sub, cache, progress=False)
            p = rm_preference(load_reward_model(sub), test, cache)
            points.append({"labels": labels, "n_train": trained["n_train"],
                           **summary(p, test)})
        points.append({k: v for k, v in row.items() if k != "name"})
    return points


COLORS = {"ai": "tab:blue", "ai_hard": "tab:purple", "ai_calibrated": "tab:green",
          "human": "tab:orange"}


def plot_curve(result: dict, path: Path) -> None:
    """Accuracy on held-out human labels against training pairs (RLAIF Figure 5)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for labels in dict.fromkeys(p["labels"] for p in result["curve"]):
        pts = sorted((p for p in result["curve"] if p["labels"] == labels),
                     key=lambda p: p["n_train"])
        x = [p["n_train"] for p in pts]
        y = np.array([p["accuracy"] for p in pts])
        err = np.array([[p["accuracy"] - p["ci"][0], p["ci"][1] - p["accuracy"]] for p in pts]).T
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, color=COLORS[labels],
                    label=f"RM on {KIND_NAMES[labels]}")
    base = next(r for r in result["rows"] if r["labels"] == "-")
    ax.axhline(base["accuracy"], color="gray", ls="--", label="length-only baseline")
    ax.axhline(0.5, color="black", lw=0.5)
    ax.set_xscale("log")
    sizes = sorted({p["n_train"] for p in result["curve"]})
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()
    ax.set_xlabel("training pairs")
    ax.set_ylabel("accuracy on held-out human labels")
    ax.set_title(f"Reward-model accuracy vs training size (test split, n={base['n']}; "
                 "95% CIs by post)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(a: float, ci: list[float]) -> str:
    return f"{a:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def to_markdown(result: dict) -> str:
    """The reward-model tables (what ``rlaif rm eval`` prints)."""
    base = next(r for r in result["rows"] if r["labels"] == "-")
    lines = [
        f"**Reward-model accuracy on held-out human labels (test split: {base['n']} "
        f"comparisons of {base['n_posts']} posts, {base['n_high']} high-confidence; 95% CIs "
        "resample posts)**",
        "",
        "| model | seed | training pairs | kept epoch / run | accuracy [95% CI] | "
        "high-confidence accuracy | length-balanced [95% CI] | prefers longer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        seed = "" if r["seed"] is None else str(r["seed"])
        epochs = "" if r["best_epoch"] is None else f"{r['best_epoch']} / {r['epochs']}"
        lines.append(f"| {r['name']} | {seed} | {r['n_train']} | {epochs} | "
                     f"{_fmt(r['accuracy'], r['ci'])} | "
                     f"{_fmt(r['accuracy_high'], r['ci_high'])} | "
                     f"{_fmt(r['length_balanced'], r['length_balanced_ci'])} | "
                     f"{r['prefers_longer']:.3f} |")
    if any(k["seeds"] > 1 for k in result["kinds"]):
        lines += ["", "| labels | seeds | accuracy: mean (sd) [min, max] | "
                  "length-balanced: mean |", "|---|---|---|---|"]
        for k in result["kinds"]:
            sd = "-" if k["accuracy_sd"] != k["accuracy_sd"] else f"{k['accuracy_sd']:.3f}"
            lines.append(f"| {k['name']} | {k['seeds']} | {k['accuracy_mean']:.3f} ({sd}) "
                         f"[{k['accuracy_min']:.3f}, {k['accuracy_max']:.3f}] | "
                         f"{k['length_balanced_mean']:.3f} |")
    if result["tests"]:
        lines += ["", "| seed 0: RM on ... vs RM on human labels | accuracy difference | "
                  "pairs better / worse | exact McNemar p | Holm p | detectable at 80% power |",
                  "|---|---|---|---|---|---|"]
        for t in result["tests"]:
            mdd = "-" if t["mdd"] != t["mdd"] else f"{t['mdd']:.3f}"
            lines.append(f"| {KIND_NAMES[t['a']]} | {t['difference']:+.3f} | {t['a_better']} / "
                         f"{t['b_better']} | {_p(t['p'])} | {_p(t['p_holm'])} | {mdd} |")
        lines += ["", "A difference is called real only where its Holm p is below 0.05; the "
                  "last column is the smallest difference these pairs could detect."]
    lab = result.get("labeler_on_training_pairs")
    if lab:
        lines += ["", f"The AI labeler agreed with the human labels of its {lab['n']} training "
                  f"pairs {_fmt(lab['alignment'], lab['alignment_ci'])}."]
    cal = result.get("calibration")
    if cal:
        lines += ["", (f"Temperature scaling: x{cal['scale']:.2f} on the logit, fitted on "
                       f"{cal['n_fit']} {cal['fit_split']}-split pairs (calibration.json)."
                       if cal["scale"] is not None else f"No calibration: {cal['reason']}.")]
    return "\n".join(lines) + "\n"
