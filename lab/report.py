"""Stage 7: reports, the ablation table of a sweep.

``rlaif table results/NAME`` writes ``table.md``, ``table.csv`` and ``table.tex``: one row per
setting with alignment and its 95% CI, the paired difference against the base setting (the
first setting of the experiment) on the same pairs with a paired-bootstrap p-value, position
bias, length bias, seconds and tokens per pair; then a row for the length-only baseline on the
same pairs and one for the human inter-annotator agreement range (73-77%, Stiennon et al.);
after ``rlaif export``, also the exported best setting on the test split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lab.export import exported_test_metrics
from lab.metrics import agreement
from lab.run import read_records
from lab.sweep import load_results, ordered_trials

HUMAN_AGREEMENT = (0.73, 0.77)  # inter-annotator agreement on TL;DR (Stiennon et al. 2020)


def agreement_by_key(run_dir: Path) -> dict[str, float]:
    """Per-pair agreement of a run's labels with the humans, keyed by pair."""
    records = read_records(Path(run_dir) / "labels.jsonl")
    p = np.array([r["p"] for r in records])
    human = np.array([r["human"] for r in records])
    return dict(zip([r["key"] for r in records], agreement(p, human).tolist()))


def paired_bootstrap(a: dict, b: dict, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Difference of mean agreement (a - b) on shared pairs, and a two-sided bootstrap p-value."""
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


def build_table(folder: str | Path) -> pd.DataFrame:
    """The ablation table of a sweep's results folder as a DataFrame."""
    folder = Path(folder)
    exp, study = load_results(folder)
    trials = ordered_trials(exp, study)
    if not trials:
        raise RuntimeError(f"{folder}: the study has no complete trial")
    base = agreement_by_key(trials[0].user_attrs["run_dir"])
    rows = []
    for t in trials:
        m = t.user_attrs
        diff, pval = paired_bootstrap(agreement_by_key(m["run_dir"]), base)
        rows.append({
            "setting": ", ".join(f"{a}={t.params[a]}" for a in exp.axes),
            "n": m["n"],
            "alignment": m["alignment"],
            "ci_low": m["alignment_ci"][0],
            "ci_high": m["alignment_ci"][1],
            "diff_vs_base": diff,
            "p_vs_base": pval,
            "position_bias": m["position_bias"],
            "prefers_longer": m["length_bias"],
            "seconds_per_pair": m["seconds_per_pair"],
            "tokens_per_pair": m["prompt_tokens_per_pair"] + m["generated_tokens_per_pair"],
        })
    m = exported_test_metrics(folder, exp, study)
    if m is not None:
        setting = m["export"]["setting"]
        rows.append({
            "setting": "exported best (" + ", ".join(f"{k}={v}" for k, v in setting.items())
            + f") on the {exp.test_split} split",
            "n": m["n"], "alignment": m["alignment"], "ci_low": m["alignment_ci"][0],
            "ci_high": m["alignment_ci"][1], "position_bias": m["position_bias"],
            "prefers_longer": m["length_bias"], "seconds_per_pair": m["seconds_per_pair"],
            "tokens_per_pair": m["prompt_tokens_per_pair"] + m["generated_tokens_per_pair"],
        })
    m0 = trials[0].user_attrs
    rows.append({"setting": "length-only baseline (same pairs)", "n": m0["n"],
                 "alignment": m0["length_baseline"], "ci_low": m0["length_baseline_ci"][0],
                 "ci_high": m0["length_baseline_ci"][1],
                 "prefers_longer": 1.0})
    rows.append({"setting": "human inter-annotator agreement (Stiennon et al.)",
                 "ci_low": HUMAN_AGREEMENT[0], "ci_high": HUMAN_AGREEMENT[1]})
    return pd.DataFrame(rows)


def _fmt(v, spec: str) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)


def display_rows(df: pd.DataFrame) -> list[list[str]]:
    """Formatted cells: setting, n, alignment [CI], diff (p), position bias, longer, s, tokens."""
    out = []
    for r in df.to_dict("records"):
        if pd.isna(r.get("alignment")):
            align = f"{r['ci_low']:.0%}-{r['ci_high']:.0%}"
        else:
            align = f"{r['alignment']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
        diff = ""
        if not pd.isna(r.get("diff_vs_base", np.nan)):
            p = r["p_vs_base"]
            diff = f"{r['diff_vs_base']:+.3f} (p{'<0.001' if p < 0.001 else f'={p:.3f}'})"
        out.append([
            r["setting"], _fmt(r.get("n"), ".0f"), align, diff,
            _fmt(r.get("position_bias"), ".3f"), _fmt(r.get("prefers_longer"), ".3f"),
            _fmt(r.get("seconds_per_pair"), ".2f"), _fmt(r.get("tokens_per_pair"), ".0f"),
        ])
    return out


HEADERS = ["setting", "n", "alignment [95% CI]", "vs base (paired p)", "position bias",
           "prefers longer", "s/pair", "tokens/pair"]


def to_markdown(df: pd.DataFrame, title: str) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(HEADERS) + " |",
             "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in display_rows(df)]
    return "\n".join(lines) + "\n"


def to_latex(df: pd.DataFrame, title: str) -> str:
    def esc(s: str) -> str:
        for ch in "&%_#$":
            s = s.replace(ch, "\\" + ch)
        return s

    lines = ["\\begin{table}[t]", "\\centering", f"\\caption{{{esc(title)}}}",
             "\\begin{tabular}{l" + "r" * (len(HEADERS) - 1) + "}", "\\toprule",
             " & ".join(esc(h) for h in HEADERS) + " \\\\", "\\midrule"]
    lines += [" & ".join(esc(c) for c in row) + " \\\\" for row in display_rows(df)]
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def write_tables(folder: str | Path) -> list[Path]:
    """Write table.md, table.csv and table.tex into a sweep's results folder."""
    folder = Path(folder)
    exp, _ = load_results(folder)
    df = build_table(folder)
    title = (f"{exp.name}: AI-labeler alignment on {exp.data.confidence}-confidence "
             f"TL;DR pairs ({exp.dev_split} split); base = first row")
    paths = [folder / "table.md", folder / "table.csv", folder / "table.tex"]
    paths[0].write_text(to_markdown(df, title))
    df.to_csv(paths[1], index=False, float_format="%.4f")
    paths[2].write_text(to_latex(df, title))
    return paths
