"""Stage 7: plots of a sweep (matplotlib, PNG).

``rlaif plot results/NAME`` writes, as the experiment's axes allow:
  * ``alignment_by_setting.png``: alignment with 95% CIs per setting, beside the length-only
    baseline and the human inter-annotator range;
  * ``alignment_vs_size.png``: alignment against labeler size, position bias in a second panel;
  * ``self_consistency.png``: alignment against self-consistency samples, one line per
    temperature;
  * ``reliability.png``: reliability diagram of the best setting's soft labels against the
    human choices and the human 9-point confidence;
  * ``cost.png``: alignment against seconds per pair, with the Pareto front;
  * ``importance.png``: Optuna parameter importance (two or more varied axes).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lab import models  # noqa: E402
from lab.metrics import human_soft  # noqa: E402
from lab.report import human_ceiling  # noqa: E402
from lab.run import RunError, read_records  # noqa: E402
from lab.sweep import best_trial, load_results, ordered_trials, trial_run_dir  # noqa: E402


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _yerr(trials) -> np.ndarray:
    a = np.array([t.user_attrs["alignment"] for t in trials])
    lo = np.array([t.user_attrs["alignment_ci"][0] for t in trials])
    hi = np.array([t.user_attrs["alignment_ci"][1] for t in trials])
    return np.vstack([a - lo, hi - a])


def _references(ax, trials, horizontal: bool = True, ceiling: dict | None = None,
                baseline: bool = True) -> None:
    """Length-only baseline (unless ``baseline`` is False: the caller marks one per row),
    chance, and the human-human agreement measured on this data's pairs judged by more than
    one worker (:func:`lab.report.human_ceiling`; left out when there is none: Stiennon et
    al.'s 73-77% covers all confidence levels, not this subset)."""
    span = ax.axvspan if not horizontal else ax.axhspan
    line = ax.axvline if not horizontal else ax.axhline
    if ceiling and ceiling.get("n"):
        span(*ceiling["ci"], color="tab:green", alpha=0.15,
             label=f"human-human agreement, 95% CI ({ceiling['n']} repeated pairs)")
    if baseline:
        base = trials[0].user_attrs["length_baseline"]
        line(base, color="tab:red", ls="--", label=f"length-only baseline ({base:.3f})")
    line(0.5, color="grey", ls=":", label="chance")


def plot_by_setting(trials, title: str, path: Path, ceiling: dict | None = None,
                    per_row_baseline: bool = False) -> None:
    """Alignment with its CI per setting; the length-only baseline as a line, or (settings on
    different data: ``per_row_baseline``) as a mark on each row, on that row's pairs."""
    labels = [", ".join(f"{k}={v}" for k, v in t.params.items()) for t in trials]
    y = np.arange(len(trials))
    fig, ax = plt.subplots(figsize=(8.5, 2.2 + 0.45 * len(trials)))
    ax.errorbar([t.user_attrs["alignment"] for t in trials], y, xerr=_yerr(trials), fmt="o",
                color="tab:blue", capsize=3, label="AI labeler (95% CI)")
    if per_row_baseline:
        ax.scatter([t.user_attrs["length_baseline"] for t in trials], y, marker="|", s=300,
                   color="tab:red", label="length-only baseline (the row's pairs)")
    _references(ax, trials, horizontal=False, ceiling=ceiling, baseline=not per_row_baseline)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("alignment with human preference (share of pairs)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.5 / (1 + 0.2 * len(trials))),
              ncol=2, fontsize=8)
    _save(fig, path)


def _groups(trials, exclude: set[str]) -> dict[str, list]:
    """Trials grouped by their other settings (one line per group), labelled by them."""
    out: dict[str, list] = {}
    for t in trials:
        rest = ", ".join(f"{k}={v}" for k, v in t.params.items() if k not in exclude)
        out.setdefault(rest, []).append(t)
    return out


def plot_size(trials, title: str, path: Path, ceiling: dict | None = None) -> None:
    size = {t.params["model"]: models.entry(t.params["model"]).params for t in trials}
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for rest, group in _groups(trials, {"model"}).items():
        group = sorted(group, key=lambda t: size[t.params["model"]])
        x = [size[t.params["model"]] for t in group]
        suffix = f" ({rest})" if rest else ""
        a1.errorbar(x, [t.user_attrs["alignment"] for t in group], yerr=_yerr(group),
                    fmt="o-", capsize=3, label=f"AI labeler, 95% CI{suffix}")
        a2.plot(x, [t.user_attrs["position_bias"] for t in group], "s-",
                label=f"same position wins both orders{suffix}")
        a2.plot(x, [t.user_attrs["position_bias_first"] for t in group], "^:",
                label=f"... and it is position 1{suffix}")
    _references(a1, trials, ceiling=ceiling)
    a1.set_ylabel("alignment with human preference")
    a2.set_ylabel("share of pairs")
    a2.set_ylim(0, 1.05)
    names = sorted(size, key=size.get)
    for ax, sub in ((a1, "alignment"), (a2, "position bias")):
        ax.set_xscale("log")
        ax.set_xticks([size[m] for m in names], [f"{m}\n{size[m]:g}B" for m in names],
                      fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel("labeler size (parameters, log scale)")
        ax.set_title(sub)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    _save(fig, path)


def plot_self_consistency(trials, title: str, path: Path, ceiling: dict | None = None) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    groups = _groups(trials, {"samples"})
    for i, (rest, group) in enumerate(groups.items()):
        ts = sorted(group, key=lambda t: t.params.get("samples", 1))
        x = np.array([t.params.get("samples", 1) for t in ts]) * (1 + 0.04 * (i - 1))
        ax.errorbar(x, [t.user_attrs["alignment"] for t in ts], yerr=_yerr(ts), fmt="o-",
                    capsize=3, label=rest or "AI labeler")
    _references(ax, trials, ceiling=ceiling)
    samples = sorted({t.params.get("samples", 1) for t in trials})
    ax.set_xscale("log")
    ax.set_xticks(samples, [str(s) for s in samples])
    ax.minorticks_off()
    ax.set_xlabel("self-consistency samples (rationales per order)")
    ax.set_ylabel("alignment with human preference")
    ax.set_title(title)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_reliability(run_dir: Path, title: str, path: Path, bins: int = 10) -> None:
    """Reliability diagram of a run folder's soft labels against the human choices."""
    records = read_records(Path(run_dir) / "labels.jsonl")
    p = np.array([r["p"] for r in records])
    human = np.array([r["human"] for r in records])
    conf = np.array([r["confidence"] or 0 for r in records], dtype=float)
    # Equal-count bins: small labelers' soft labels crowd near 0.5, where fixed-width bins
    # would merge them into one or two points.
    centers, hard, soft, counts = [], [], [], []
    for idx in np.array_split(np.argsort(p, kind="stable"), min(bins, len(p))):
        rated = idx[conf[idx] > 0]
        centers.append(p[idx].mean())
        hard.append(human[idx].mean())
        soft.append(human_soft(conf[rated]).mean() if len(rated) else np.nan)
        counts.append(len(idx))
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    ax.plot(centers, hard, "o-", label="human chose the first (share)")
    ax.plot(centers, soft, "s--", label="human 9-point confidence (as probability)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"AI soft label: P(first summary better), {len(counts)} equal-count bins "
                  f"of ~{counts[0]} pairs")
    ax.set_ylabel("human preference for the first summary")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    _save(fig, path)


def plot_cost(trials, title: str, path: Path) -> None:
    cost = np.array([t.user_attrs["seconds_per_pair"] for t in trials])
    align = np.array([t.user_attrs["alignment"] for t in trials])
    front = [i for i in range(len(trials))
             if not any((cost[j] <= cost[i] and align[j] >= align[i])
                        and (cost[j] < cost[i] or align[j] > align[i])
                        for j in range(len(trials)))]
    front.sort(key=lambda i: cost[i])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.errorbar(cost, align, yerr=_yerr(trials), fmt="o", color="tab:blue", alpha=0.6,
                capsize=2, label="setting (95% CI)")
    ax.plot(cost[front], align[front], "D-", color="tab:red", lw=2, label="Pareto front")
    for i in (range(len(trials)) if len(trials) <= 4 else front):
        ax.annotate(", ".join(f"{k}={v}" for k, v in trials[i].params.items()),
                    (cost[i], align[i]), textcoords="offset points", xytext=(5, 5), fontsize=7)
    ax.set_xlabel("cost: seconds per pair (both orders, this CPU)")
    ax.set_ylabel("alignment with human preference")
    ax.set_title(title + ("" if len(trials) <= 4 else "\n(settings on the front labelled)"),
                 fontsize=10)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_importance(study, title: str, path: Path) -> bool:
    import optuna

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # PED-ANOVA ranks what it takes to reach *low* target values: negate alignment.
            imp = optuna.importance.get_param_importances(study, target=lambda t: -t.values[0])
    except (RuntimeError, ValueError):
        return False
    if len(imp) < 2:
        return False
    names = list(imp)[::-1]
    fig, ax = plt.subplots(figsize=(6, 1.5 + 0.5 * len(names)))
    ax.barh(names, [imp[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance for alignment (Optuna PED-ANOVA, normalised)")
    ax.set_title(title)
    _save(fig, path)
    return True


def write_plots(folder: str | Path) -> list[Path]:
    """Write every plot the experiment's axes allow; returns the paths written."""
    folder = Path(folder)
    exp, study = load_results(folder)
    trials = ordered_trials(exp, study)
    if not trials:
        raise RunError(f"{folder}: the study has no complete trial")
    from lab.experiment import DATA_AXES
    from lab.report import DATASET_NAMES

    blocks = any(a in DATA_AXES for a in exp.axes)
    tasks = exp.axes.get("task") or [exp.data.task or "tldr"]
    what = " / ".join(DATASET_NAMES.get(t, t) for t in tasks)
    subset = f"{exp.data.confidence}-confidence {what}, {exp.dev_split} split"
    ns = sorted({t.user_attrs["n"] for t in trials})
    n = ns[0] if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
    # the human ceiling of the whole data, not of each block's
    ceiling = None if blocks else human_ceiling(exp.data)
    written = []

    def out(name: str) -> Path:
        written.append(folder / name)
        return folder / name

    plot_by_setting(trials, f"{exp.name}: alignment per setting\n({subset}, n={n} pairs)",
                    out("alignment_by_setting.png"), ceiling, per_row_baseline=blocks)
    if "model" in exp.axes and len(exp.axes["model"]) > 1:
        plot_size(trials, f"{exp.name}: labeler size ({subset}, n={n})",
                  out("alignment_vs_size.png"), ceiling)
    if {"samples", "temperature"} & set(exp.axes):
        plot_self_consistency(trials, f"{exp.name}: self-consistency ({subset}, n={n})",
                              out("self_consistency.png"), ceiling)
    best = best_trial(exp, study)
    setting = ", ".join(f"{k}={v}" for k, v in best.params.items())
    plot_reliability(trial_run_dir(folder, best),
                     f"{exp.name}: reliability of the best setting\n({setting}; n={n})",
                     out("reliability.png"))
    plot_cost(trials, f"{exp.name}: alignment vs cost ({subset})", out("cost.png"))
    varied = [a for a, v in exp.axes.items() if len(v) > 1]
    if len(varied) >= 2 and len(trials) >= 4 and plot_importance(
        study, f"{exp.name}: what matters for alignment", folder / "importance.png"
    ):
        written.append(folder / "importance.png")
    return written


def plot_a2c(log: list[dict], path: Path, config) -> None:
    """A2C curves per update: score and reward, KL to the start, losses, entropy, length."""
    x = [r["update"] for r in log]
    score = "reward-model score" if config.reward == "rm" else "labeler's reward in [0, 1]"
    panels = [("score", f"{score} (mean)"), ("kl", "KL to starting policy (nats/summary)"),
              ("value_loss", "value loss"), ("entropy", "entropy (nats/token)"),
              ("length", "summary length (tokens)"),
              ("truncated", "share of summaries cut at the token budget"),
              ("reward", "episode reward (normalised score - EOS penalty - KL)"
               if config.normalize_reward else "episode reward (score - EOS penalty - KL)")]
    panels = [(k, t) for k, t in panels if k in log[0]]  # logs written before a field existed
    fig, axes = plt.subplots(2, 4, figsize=(15, 6))
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (key, title) in zip(axes.flat, panels):
        y = np.array([r[key] for r in log], dtype=float)
        ax.plot(x, y, color="lightsteelblue", lw=1)
        if len(y) >= 5:  # a moving average of 5 updates shows the trend
            k = np.ones(5) / 5
            ax.plot(x[4:], np.convolve(y, k, mode="valid"), color="tab:blue", lw=2)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("update")
    fig.suptitle(f"A2C: {config.policy}, reward={config.reward}, kl_coef={config.kl_coef}, "
                 f"batch {config.batch_size}", fontsize=11)
    _save(fig, path)


def plot_calibration(report: dict, path: Path) -> None:
    """Reliability of the raw and of the temperature-scaled AI labels on the pairs the
    temperature was not fitted on (``report``: what :func:`lab.rm_labels.calibrate` returns)."""
    part = report.get("held_out") or report["fit"]
    which = "held-out" if report.get("held_out") else "fitted"
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    for key, style, name in (("bins_raw", "o-", "raw"), ("bins_calibrated", "s--",
                                                          f"scaled x{report['scale']:.1f}")):
        bins = part[key]
        ax.plot([b["mean_p"] for b in bins], [b["mean_human"] for b in bins], style,
                label=f"{name} (NLL {part['nll_' + key[5:]]:.3f})")
        for b in bins:
            ax.annotate(str(b["n"]), (b["mean_p"], b["mean_human"]), fontsize=6,
                        textcoords="offset points", xytext=(3, 3))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("AI label: P(first summary better), 10 equal-width bins (count beside)")
    ax.set_ylabel("share of humans who chose the first")
    ax.set_title(f"Temperature scaling fitted on {report['n_fit']} {report['fit_split']} pairs; "
                 f"{part['n']} {which} pairs", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    _save(fig, path)
