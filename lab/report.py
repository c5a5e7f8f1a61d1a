"""Stage 7: reports, the ablation table of a sweep.

``rlaif table results/NAME`` writes ``table.md``, ``table.csv`` and ``table.tex``: one row per
setting, recomputed from each trial's labels.jsonl, with

* alignment over the labeled records, and over distinct pairs (repeated judgments of a pair
  merged into a soft label) with a 95% CI from a bootstrap over posts;
* length-balanced alignment (mean of alignment when the human preferred the longer and the
  shorter summary; a length-only labeler scores 0.5) with its CI;
* the paired difference against the base setting (the first of the experiment) on the shared
  distinct pairs, with an exact sign-flip p-value and its Holm correction over the table;
* the z of the labeler's logit in a logistic regression of the human label on it and on which
  summary is longer (length-controlled signal);
* position bias, length bias, seconds and tokens per pair;
* for a judge with verdicts, data with human ties, or any dataset but TL;DR: MT-Bench's
  agreement of the verdicts with ties and without ties (a judge's verdict is its own, else
  the conservative rule on its two orders: :func:`lab.metrics.record_verdict`);

then rows for the length-only and always-first baselines on the same pairs, the exported best
setting on the test split (after ``rlaif export``), and the human-human agreement of the pairs
in the data judged by more than one worker (same confidence subset); and under the table the
minimum detectable difference of the table's paired comparisons and the Stiennon et al.
footnote. docs/statistics.md explains every number.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from lab import data as data_mod
from lab import stats
from lab.errors import RunError
from lab.experiment import DATA_AXES
from lab.export import exported_test_metrics
from lab.metrics import agreement, compute, distinct_pairs, verdict_agreement
from lab.run import read_records
from lab.sweep import load_results, ordered_trials, trial_run_dir

DATASET_NAMES = {"tldr": "TL;DR", "hh": "HH-RLHF", "llmbar": "LLMBar", "pandalm": "PandaLM",
                 "autoj": "Auto-J", "mtbench": "MT-Bench"}
"""How table titles name a dataset (``data.task``)."""
HUMAN_AGREEMENT = (0.73, 0.77)  # inter-annotator agreement on TL;DR (Stiennon et al. 2020)
STIENNON_NOTE = (
    "Stiennon et al. (2020, arXiv 2009.01325) report 73-77% agreement between human labelers "
    "on TL;DR comparisons of all confidence levels; it is not comparable with a "
    "high-confidence subset, so the ceiling row above is measured on this data instead."
)


def agreement_by_key(run_dir: Path) -> dict[str, float]:
    """Per-record agreement of a run's labels with the humans, keyed by record (``rlaif
    optimize`` pairs its two runs with this)."""
    records = read_records(Path(run_dir) / "labels.jsonl")
    p = np.array([r["p"] for r in records])
    human = np.array([r["human"] for r in records])
    return dict(zip([r["key"] for r in records], agreement(p, human).tolist()))


def paired_bootstrap(a: dict, b: dict, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Difference of mean agreement (a - b) on shared keys, and a two-sided bootstrap p-value.

    Kept for ``rlaif optimize``; the sweep tables use the exact :func:`paired_test` instead
    (a bootstrap p is too small at small n: see docs/statistics.md).
    """
    keys = sorted(set(a) & set(b))
    d = np.array([a[k] - b[k] for k in keys])
    if len(d) == 0:
        return float("nan"), float("nan")
    if not d.any():
        return 0.0, 1.0
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    p = 2 * min((boots <= 0).mean(), (boots >= 0).mean())
    return float(d.mean()), float(min(1.0, max(p, 1.0 / n_boot)))


def agreement_by_pair(records: list[dict]) -> dict[str, float]:
    """Per distinct pair, the mean agreement of its records with the humans."""
    d = distinct_pairs(records)
    return dict(zip(d["key"].tolist(), d["agree"].tolist()))


def paired_test(a: dict, b: dict, seed: int = 0) -> tuple[float, float, int, float]:
    """Paired comparison a - b on the pairs both have.

    Returns:
        (mean difference, exact two-sided sign-flip p, shared pairs, share of them that
        differ).
    """
    keys = sorted(set(a) & set(b))
    d = np.array([a[k] - b[k] for k in keys])
    if len(d) == 0:
        return float("nan"), float("nan"), 0, float("nan")
    p, _ = stats.sign_flip_test(d, seed=seed)
    return float(d.mean()), p, len(d), float((d != 0).mean())


def human_ceiling(exp_data: data_mod.DataConfig) -> dict:
    """Human-human agreement on the pairs of the data judged by more than one worker.

    Same confidence subset as the experiment, every split (agreement between humans is not
    something a split protects). Returns ``n`` (pairs), ``judgments``, ``agreement``, ``ci``,
    or ``error`` when the data cannot be read.
    """
    source = data_mod.resolve_data_path(exp_data.path, exp_data.task)
    try:
        pairs, _ = data_mod.load_pairs(source, exp_data.skip_bad_rows, exp_data.include_edits,
                                       exp_data.task)
    except data_mod.DataError as err:
        return {"error": str(err)}
    pairs = data_mod.select(pairs, exp_data.confidence, "all", subset=exp_data.subset)
    groups: dict[str, list] = {}
    for p in pairs:
        groups.setdefault(data_mod.pair_id(p), []).append(p)
    multi = [g for g in groups.values() if len(g) > 1]
    if not multi:
        return {"n": 0, "judgments": 0, "agreement": float("nan"),
                "ci": [float("nan"), float("nan")]}
    hh = stats.pairwise_agreement([[p.human for p in g] for g in multi])
    posts = np.array([g[0].post_id for g in multi])
    ci = stats.cluster_bootstrap_ci(lambda rows: float(hh[rows].mean()), posts,
                                    seed=exp_data.seed)
    return {"n": len(multi), "judgments": sum(len(g) for g in multi),
            "agreement": float(hh.mean()), "ci": list(ci)}


TIE_FIELDS = ("agreement_with_tie", "n_agreement_with_tie", "agreement_without_tie",
              "n_agreement_without_tie")
"""MT-Bench's verdict agreement (a judge with verdicts, or data with human ties): a table
column only where some row has it."""


def _row(setting: str, m: dict) -> dict:
    lc = m.get("length_controlled", {}).get("labeler_logit", {})
    return {
        "setting": setting, "n": m["n"], "n_pairs": m.get("n_pairs"),
        "alignment": m["alignment"],
        "ci_low": m["alignment_ci"][0], "ci_high": m["alignment_ci"][1],
        "alignment_pairs": m.get("alignment_pairs"),
        "pairs_ci_low": (m.get("alignment_pairs_ci") or [None, None])[0],
        "pairs_ci_high": (m.get("alignment_pairs_ci") or [None, None])[1],
        "length_balanced": m.get("alignment_length_balanced"),
        "balanced_ci_low": (m.get("alignment_length_balanced_ci") or [None, None])[0],
        "balanced_ci_high": (m.get("alignment_length_balanced_ci") or [None, None])[1],
        "labeler_z": lc.get("z"), "labeler_z_p": lc.get("p"),
        "regression_note": m.get("length_controlled", {}).get("reason", ""),
        "position_bias": m["position_bias"], "prefers_longer": m["length_bias"],
        "seconds_per_pair": m["seconds_per_pair"],
        "tokens_per_pair": m["prompt_tokens_per_pair"] + m["generated_tokens_per_pair"],
        **{k: m[k] for k in TIE_FIELDS if k in m},
    }


def build_table(folder: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """The ablation table of a sweep's results folder and the notes printed under it.

    Settings are compared only on the same pairs: where the experiment sweeps an axis that
    changes the data slice (:data:`lab.experiment.DATA_AXES`, e.g. ``subset``), each value of
    it is a block with its own base (its first setting) and its own baseline rows; the Holm
    correction runs over every comparison of the table.
    """
    folder = Path(folder)
    exp, study = load_results(folder)
    trials = ordered_trials(exp, study)
    if not trials:
        raise RunError(f"{folder}: the study has no complete trial; run `rlaif sweep` first")
    seed = exp.data.seed
    data_axes = [a for a in exp.axes if a in DATA_AXES]
    # beyond TL;DR, the table has MT-Bench's agreement with and without ties for every judge
    mt_bench_style = any(t != "tldr" for t in exp.axes.get("task") or [exp.data.task or "tldr"])
    blocks: dict[tuple, list] = {}
    for t in trials:
        blocks.setdefault(tuple(t.params[a] for a in data_axes), []).append(t)
    rows, discord, shared = [], [], []
    for values, block in blocks.items():
        where = ", ".join(f"{a}={v}" for a, v in zip(data_axes, values))
        runs = [read_records(trial_run_dir(folder, t) / "labels.jsonl") for t in block]
        base = agreement_by_pair(runs[0])
        for i, (t, records) in enumerate(zip(block, runs)):
            m = compute(records, seed=seed)
            if mt_bench_style:  # every judge's verdicts, as MT-Bench reports agreement
                m.update(verdict_agreement(records))
            slug = ", ".join(f"{a}={t.params[a]}" for a in exp.axes if a in t.params)
            row = _row(slug, m)
            if i:  # a block's base row is not compared with itself
                diff, p, n_shared, q = paired_test(agreement_by_pair(records), base, seed)
                row.update(diff_vs_base=diff, p_vs_base=p)
                discord.append(q)
                shared.append(n_shared)
            rows.append(row)
        rows += baseline_rows(runs[0], seed, where)
        if data_axes:  # each block's own data
            block_data = dataclasses.replace(
                exp.data, **{a: v for a, v in zip(data_axes, values)})
            rows += ceiling_rows(human_ceiling(block_data), block_data, where)
    comparisons = [r for r in rows if "p_vs_base" in r]
    for r, adj in zip(comparisons, stats.holm([r["p_vs_base"] for r in comparisons])):
        r["p_holm"] = adj
    best_test = exported_test_metrics(folder, exp, study)  # None unless it is the current best
    if best_test is not None:
        setting = best_test["export"]["setting"]
        rows.append(_row("exported best (" + ", ".join(f"{k}={v}" for k, v in setting.items())
                         + f") on the {exp.test_split} split", best_test))
    if not data_axes:
        rows += ceiling_rows(human_ceiling(exp.data), exp.data)
    notes = [mdd_note(shared, discord)]
    if all(t == "tldr" for t in exp.axes.get("task") or [exp.data.task or "tldr"]):
        notes.append(STIENNON_NOTE)
    return pd.DataFrame(rows), notes


def ceiling_rows(ceiling: dict, data: data_mod.DataConfig, where: str = "") -> list[dict]:
    """The human-human agreement row (a block of a table with data axes shows it only where
    the data has pairs judged more than once)."""
    label = (f"human-human agreement ({data.confidence}-confidence pairs of the data "
             f"judged by more than one worker{'; ' + where if where else ''})")
    if "error" in ceiling:
        return [{"setting": label + ": not computed, " + ceiling["error"]}]
    if ceiling["n"] == 0:
        return [] if where else [{"setting": label + ": none, no such pair in the data"}]
    return [{"setting": f"{label[:-1]}, every split; {ceiling['judgments']} judgments)",
             "n_pairs": ceiling["n"], "alignment_pairs": ceiling["agreement"],
             "pairs_ci_low": ceiling["ci"][0], "pairs_ci_high": ceiling["ci"][1]}]


def baseline_rows(records: list[dict], seed: int, where: str = "") -> list[dict]:
    """The length-only and always-first rows on the pairs of one run (``where`` names the
    block of a table with data axes)."""
    m0 = compute(records, seed=seed)
    also = f"; {where}" if where else ""
    human = np.array([r["human"] for r in records], float)
    first_ci = stats.cluster_bootstrap_ci(lambda rows: float(human[rows].mean()),
                                          np.array([r["post_id"] for r in records]), seed=seed)
    return [{"setting": f"length-only baseline (same pairs{also})", "n": m0["n"],
             "n_pairs": m0["n_pairs"], "alignment": m0["length_baseline"],
             "ci_low": m0["length_baseline_ci"][0], "ci_high": m0["length_baseline_ci"][1],
             "alignment_pairs": m0["length_baseline_pairs"],
             "pairs_ci_low": m0["length_baseline_pairs_ci"][0],
             "pairs_ci_high": m0["length_baseline_pairs_ci"][1],
             "length_balanced": m0["length_baseline_balanced"], "prefers_longer": 1.0},
            {"setting": f"always the first response (the data's first-position human "
                        f"rate{also})",
             "n": m0["n"], "alignment": m0["first_position_rate"], "ci_low": first_ci[0],
             "ci_high": first_ci[1], "position_bias": 1.0}]


def mdd_note(shared: list[int], discord: list[float]) -> str:
    """The 'minimum detectable difference' line of a table."""
    if not shared:
        return "Minimum detectable difference: no setting is compared with the base."
    n = min(shared)
    q = float(np.mean(discord))
    mdd = stats.mdd_paired(n, q) if q > 0 else float("nan")
    need = stats.pairs_needed(0.10, q) if q >= 0.10 else None
    what = (f"{mdd:.3f}" if not np.isnan(mdd)
            else f"none: no difference up to {q:.3f} (the share of pairs that differ) reaches "
                 "80% power")
    more = (f"; a difference of 0.10 would need about {need} distinct pairs" if need
            else "; a difference of 0.10 is larger than the share of pairs that differ")
    return (f"Minimum detectable difference vs base at 80% power (exact two-sided sign test, "
            f"alpha 0.05 before Holm; {n} shared distinct pairs, {q:.3f} of them labeled "
            f"differently on average): {what}{more}. A setting is better than the base only "
            "where its Holm-corrected p is below 0.05.")


def _fmt(v, spec: str) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)


def _ci(r: dict, point: str, lo: str, hi: str) -> str:
    v = r.get(point)
    if v is None or pd.isna(v):
        return ""
    if r.get(lo) is None or pd.isna(r.get(lo)):
        return f"{v:.3f}"
    return f"{v:.3f} [{r[lo]:.3f}, {r[hi]:.3f}]"


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"={p:.3f}"


def display_rows(df: pd.DataFrame) -> list[list[str]]:
    """Formatted cells, one list per row, in the order of :data:`HEADERS`."""
    out = []
    for r in df.to_dict("records"):
        n = _fmt(r.get("n"), ".0f")
        if not pd.isna(r.get("n_pairs", np.nan)):
            n = f"{n} ({r['n_pairs']:.0f})" if n else f"({r['n_pairs']:.0f})"
        diff = ""
        if not pd.isna(r.get("diff_vs_base", np.nan)):
            diff = (f"{r['diff_vs_base']:+.3f} (p{_p(r['p_vs_base'])}, "
                    f"Holm p{_p(r['p_holm'])})")
        z = "no fit" if isinstance(r.get("regression_note"), str) and r["regression_note"] else ""
        if not pd.isna(r.get("labeler_z", np.nan)):
            z = f"{r['labeler_z']:+.2f} (p{_p(r['labeler_z_p'])})"
        out.append([
            r["setting"], n, _ci(r, "alignment", "ci_low", "ci_high"),
            _ci(r, "alignment_pairs", "pairs_ci_low", "pairs_ci_high"),
            _ci(r, "length_balanced", "balanced_ci_low", "balanced_ci_high"), diff, z,
            _fmt(r.get("position_bias"), ".3f"), _fmt(r.get("prefers_longer"), ".3f"),
            _fmt(r.get("seconds_per_pair"), ".2f"), _fmt(r.get("tokens_per_pair"), ".0f"),
        ] + ([_ties(r)] if has_ties(df) else []))
    return out


def has_ties(df: pd.DataFrame) -> bool:
    """Whether a table shows the verdict-agreement column (some row has it)."""
    return "agreement_with_tie" in df and bool(df["agreement_with_tie"].notna().any())


def _ties(r: dict) -> str:
    if pd.isna(r.get("agreement_with_tie", np.nan)):
        return ""
    return (f"{_fmt(r['agreement_with_tie'], '.3f')} ({r['n_agreement_with_tie']:.0f}) / "
            f"{_fmt(r['agreement_without_tie'], '.3f')} ({r['n_agreement_without_tie']:.0f})")


def headers(df: pd.DataFrame) -> list[str]:
    """The table's column names: :data:`HEADERS`, and the verdict agreement where shown."""
    return HEADERS + (["verdicts: with ties / without (n)"] if has_ties(df) else [])


HEADERS = ["setting", "n (distinct pairs)", "alignment [95% CI]",
           "distinct pairs [95% cluster CI]", "length-balanced [95% CI]",
           "vs base (exact p, Holm p)", "labeler z given length (p)", "position bias",
           "prefers longer", "s/pair", "tokens/pair"]


def to_markdown(df: pd.DataFrame, title: str, notes: list[str] = ()) -> str:
    cols = headers(df)
    lines = [f"### {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(row) + " |" for row in display_rows(df)]
    lines += [""] + [f"- {note}" for note in notes] if notes else []
    return "\n".join(lines) + "\n"


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$",
                 "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                 "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                 "<": r"\textless{}", ">": r"\textgreater{}"}


def latex_escape(s: str) -> str:
    """Escape LaTeX's special characters (each one once, backslash included)."""
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in s)


def to_latex(df: pd.DataFrame, title: str, notes: list[str] = ()) -> str:
    esc = latex_escape
    lines = ["\\begin{table}[t]", "\\centering", f"\\caption{{{esc(title)}}}",
             "\\begin{tabular}{l" + "r" * (len(headers(df)) - 1) + "}", "\\toprule",
             " & ".join(esc(h) for h in headers(df)) + " \\\\", "\\midrule"]
    lines += [" & ".join(esc(c) for c in row) + " \\\\" for row in display_rows(df)]
    lines += ["\\bottomrule", "\\end{tabular}"]
    lines += [f"\\par\\footnotesize {esc(note)}" for note in notes]
    lines += ["\\end{table}"]
    return "\n".join(lines) + "\n"


def write_tables(folder: str | Path) -> list[Path]:
    """Write table.md, table.csv and table.tex into a sweep's results folder."""
    folder = Path(folder)
    exp, _ = load_results(folder)
    df, notes = build_table(folder)
    tasks = exp.axes.get("task") or [exp.data.task or "tldr"]
    what = " / ".join(DATASET_NAMES.get(t, t) for t in tasks)
    subset = f" {exp.data.subset}" if exp.data.subset else ""
    base = ("base = the first row of each block" if any(a in DATA_AXES for a in exp.axes)
            else "base = first row")
    title = (f"{exp.name}: AI-labeler alignment on {exp.data.confidence}-confidence "
             f"{what}{subset} pairs ({exp.dev_split} split); {base}")
    paths = [folder / "table.md", folder / "table.csv", folder / "table.tex"]
    paths[0].write_text(to_markdown(df, title, notes))
    df.to_csv(paths[1], index=False, float_format="%.4f")
    paths[2].write_text(to_latex(df, title, notes))
    return paths
