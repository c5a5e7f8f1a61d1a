"""Stage 7d: one self-contained HTML page of a run, a sweep or an RLAIF run folder.

``rlaif report PATH`` writes ``PATH/report.html``: the summary tables and plots, and a browser
of the pairs (the post, both responses, ``p_fwd`` / ``p_swapped`` / ``p``, rationales, the
human label and confidence) with filters and sorting; for a sweep, every setting's labels of a
pair side by side. The page needs no network: style, script and images are inline (PNG plots as
``data:`` URIs) and the pair data is embedded as JSON (``<``, ``>`` and ``&`` escaped, so a post
containing ``</script>`` cannot end the script element).

Three kinds of folder, recognised by their files:
  * a run folder (``rlaif label``): ``config.json``, ``labels.jsonl``, ``metrics.json``;
  * a sweep's results folder (``rlaif sweep``): ``experiment.json``, ``study.db``, trials;
  * an RLAIF run folder (``rlaif rm label`` and after): ``label/`` (a run folder), and as far as
    they were run ``rm_eval.json``, ``rm_curve.png``, ``a2c/`` (curves, ``winrate.json``).

Labels do not store the posts: they are read from the data the run names (its config's data
path, or ``--data``), so the report says so in one line when that data is not there.
"""

from __future__ import annotations

import base64
import json
import math
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jinja2
import numpy as np

import lab
from lab import data as data_mod
from lab.data import HIGH_CONFIDENCE
from lab.errors import DataError, RunError
from lab.io import write_text_atomic
from lab.metrics import agreement
from lab.run import read_records

REPORT = "report.html"


@dataclass(frozen=True)
class Run:
    """One labeling run shown in the pair browser."""

    name: str
    """The setting's label (``model=smollm2-135m``) or the run folder's name."""
    folder: Path
    """The run folder (``config.json``, ``labels.jsonl``)."""


def kind_of(folder: Path) -> str:
    """``run``, ``sweep`` or ``rlaif``; a RunError naming what is missing otherwise."""
    if (folder / "experiment.json").is_file() and any(
            (folder / f).is_file() for f in ("study.db", "study.json")):
        return "sweep"
    if all((folder / f).is_file() for f in ("config.json", "labels.jsonl", "metrics.json")):
        return "run"
    if (folder / "label" / "labels.jsonl").is_file():
        return "rlaif"
    if (folder / "experiment.json").is_file():
        raise RunError(f"{folder}: experiment.json but no study.db (the sweep's trials are not "
                       "here); run `rlaif sweep` on its experiment file first")
    raise RunError(
        f"{folder}: not a run folder (config.json, labels.jsonl, metrics.json), a sweep "
        "(experiment.json, study.db) or an RLAIF run folder (label/); pass one of those"
    )


# --- cells and tables --------------------------------------------------------------------


def cell(value) -> str:
    """A table cell: floats to 3 decimals, pairs of floats as [lo, hi], NaN and None empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float | np.floating):
        return f"{value:.3f}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(cell(v) for v in value) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{k}={cell(v) if v is not None else 'none'}" for k, v in value.items())
    return str(value)


def table(caption: str, columns: list[str], rows: list[list]) -> dict:
    """A table for the page: every cell formatted by :func:`cell`."""
    return {"caption": caption, "columns": columns,
            "rows": [[cell(v) for v in row] for row in rows]}


def metrics_table(caption: str, metrics: dict, split_after: int = 12) -> dict:
    """Every key of a metrics dict (new metrics show up without code here); more than
    ``split_after`` keys are laid out as two metric/value column pairs."""
    items = [[k, v] for k, v in metrics.items()]
    if len(items) <= split_after:
        return table(caption, ["metric", "value"], items)
    half = (len(items) + 1) // 2
    left, right = items[:half], items[half:] + [[None, None]] * (2 * half - len(items))
    return table(caption, ["metric", "value", "metric", "value"],
                 [a + b for a, b in zip(left, right)])


def headline_table(caption: str, m: dict) -> dict:
    """The numbers to read first (those the run has): alignment on distinct pairs with its
    clustered CI, the length-balanced and length-controlled views, the baselines on the same
    pairs, the in-house ceiling, position bias and cost with its machine."""
    def with_ci(key: str) -> str | None:
        if key not in m:
            return None
        ci = m.get(f"{key}_ci")
        return f"{cell(m[key])} {cell(ci)}" if ci else cell(m[key])

    logit = (m.get("length_controlled") or {}).get("labeler_logit")
    rows = [
        ["alignment, distinct pairs [95% CI clustered by post]", with_ci("alignment_pairs")],
        ["alignment, records [95% CI]", with_ci("alignment")],
        ["length-balanced alignment (length-only = 0.5)", with_ci("alignment_length_balanced")],
        ["labeler logit given length: z (p)",
         f"{logit['z']:+.2f} ({logit['p']:.2g})" if logit else None],
        ["length-only baseline, same distinct pairs", with_ci("length_baseline_pairs")],
        ["always the first summary (the data's order prior)", with_ci("first_position_rate")],
        ["forward order only (read against the order prior)", with_ci("alignment_forward_only")],
        ["human-human agreement (pairs judged twice or more)", with_ci("human_human_agreement")],
        ["position bias (same position wins in both orders)", with_ci("position_bias")],
        ["seconds per pair", with_ci("seconds_per_pair")],
        ["number format", m.get("precision")],
        ["machine", f"{m['cpu']}, {m.get('cores')} cores" if "cpu" in m else None],
    ]
    return table(caption, ["headline", "value"], [r for r in rows if r[1] is not None])


def records_table(caption: str, records: list[dict]) -> dict:
    """Rows of dicts as a table whose columns are every key, in first-seen order."""
    columns: list[str] = []
    for r in records:
        columns += [k for k in r if k not in columns]
    return table(caption, columns, [[r.get(c) for c in columns] for r in records])


def frame_table(caption: str, df) -> dict:
    """A pandas DataFrame (e.g. :func:`lab.report.build_table`) with all its columns."""
    rows = [[None if _missing(v) else v for v in row] for row in df.itertuples(index=False)]
    for j in range(len(df.columns)):  # a count column with a blank is float in pandas
        values = [row[j] for row in rows if row[j] is not None]
        if values and all(isinstance(v, float | np.floating) and float(v).is_integer()
                          and abs(v) >= 2 for v in values):
            for row in rows:
                row[j] = None if row[j] is None else int(row[j])
    return table(caption, [str(c) for c in df.columns], rows)


def _missing(v) -> bool:
    return v is None or (isinstance(v, float | np.floating) and math.isnan(v))


def image(caption: str, path: Path) -> dict:
    """A PNG as a data: URI."""
    return {"caption": caption,
            "uri": "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()}


# --- pairs -------------------------------------------------------------------------------


def load_texts(runs: list[Run], data: str | None) -> dict[str, data_mod.Pair]:
    """The posts and responses of the runs' pairs, by key, from the data each run names."""
    sources = []
    for run in runs:
        config = json.loads((run.folder / "config.json").read_text())
        task = config["data"].get("task")
        source = (data_mod.resolve_data_path(data or config["data"]["path"], task),
                  bool(config["data"].get("include_edits", False)), task)
        if source not in sources:
            sources.append(source)
    pairs: dict[str, data_mod.Pair] = {}
    for source, include_edits, task in sources:
        try:
            loaded, _ = data_mod.load_pairs(source, skip_bad_rows=True,
                                            include_edits=include_edits, task=task)
        except DataError as err:
            raise DataError(f"{err} (the report reads the posts from the data the run "
                            "labeled; pass --data PATH)") from None
        pairs.update((p.key, p) for p in loaded)
    return pairs


def human_length_choice(record: dict) -> str:
    """Whether the human chose the ``longer`` or ``shorter`` response (``equal`` lengths)."""
    diff = record["len_first"] - record["len_second"]
    if diff == 0:
        return "equal"
    first_longer = diff > 0
    return "longer" if (record["human"] > 0.5) == first_longer else "shorter"


def label_view(record: dict) -> dict:
    """What the page shows of one setting's label of a pair."""
    p, p_fwd, p_sw = record["p"], record["p_fwd"], record["p_swapped"]
    same_position = (p_fwd > 0.5 and p_sw > 0.5) or (p_fwd < 0.5 and p_sw < 0.5)
    return {
        "p": p, "p_fwd": p_fwd, "p_swapped": p_sw,
        "agree": float(agreement(np.array([p]), np.array([record["human"]]))[0]),
        "flip": bool(same_position),
        "rationales": record.get("rationales") or {},
        "seconds": record.get("seconds"),
        "cache_hit": record.get("cache_hit"),
    }


def browser(runs: list[Run], data: str | None) -> dict:
    """The pair browser's data: one entry per pair, with every run's label of it (or null)."""
    per_run = [{r["key"]: r for r in read_records(run.folder / "labels.jsonl")} for run in runs]
    keys = list(dict.fromkeys(k for labels in per_run for k in labels))  # first-seen order
    texts = load_texts(runs, data)
    missing = [k for k in keys if k not in texts]
    if missing:
        raise DataError(f"{len(missing)} labeled pairs (first: {missing[0]}) are not in the "
                        "data the run names; pass --data PATH with the data that was labeled")
    pairs = []
    for key in keys:
        first = next(labels[key] for labels in per_run if key in labels)
        t = texts[key]
        pairs.append({
            "key": key, "where": Path(t.source).name if t.source else key,
            "post_id": t.post_id, "title": t.title, "subreddit": t.subreddit,
            "text": t.text, "first": t.first, "second": t.second,
            "human": first["human"], "confidence": first["confidence"],
            "high_confidence": first["confidence"] in HIGH_CONFIDENCE,
            "len_first": first["len_first"], "len_second": first["len_second"],
            "human_chose": human_length_choice(first),
            "labels": [label_view(labels[key]) if key in labels else None
                       for labels in per_run],
        })
    return {"settings": [run.name for run in runs], "pairs": pairs}


# --- the three kinds -----------------------------------------------------------------------


def run_page(folder: Path, data: str | None) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    return {
        "title": f"labeling run {folder.name}",
        "sections": [
            {"heading": "Summary", "tables": [headline_table(f"{folder}/metrics.json", metrics)],
             "images": [reliability_plot(folder)], "notes": []},
            {"heading": "All metrics", "collapsed": True,
             "tables": [metrics_table(f"{folder}/metrics.json", metrics)],
             "images": [], "notes": []},
            {"heading": "Config", "collapsed": True,
             "tables": [table(f"{folder}/config.json", ["section", "settings"],
                              [[k, v] for k, v in config.items()])],
             "images": [], "notes": []}],
        "subtitle": run_line(config),
        "browser": browser([Run(folder.name, folder)], data),
    }


def run_line(config: dict) -> str:
    """One line naming a run's labeler, prompt and data slice."""
    p, d, dec = config["prompt"], config["data"], config["decode"]
    return (f"{config['backend']['model']} ({config['backend']['backend']}) · preamble "
            f"{p['preamble']}, {p['shots']} shots, CoT {'on' if p['cot'] else 'off'}, "
            f"{dec['samples']} sample(s) · {d['confidence']}-confidence {d['split']} split, "
            f"n={d['n']}, seed {d['seed']}")


def reliability_plot(folder: Path) -> dict:
    """The run's reliability diagram, drawn by :func:`lab.plots.plot_reliability`."""
    from lab.plots import plot_reliability

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reliability.png"
        plot_reliability(folder, f"{folder.name}: reliability of the soft labels", path)
        return image("reliability diagram", path)


def sweep_page(folder: Path, data: str | None) -> dict:
    from lab.experiment import DATA_AXES
    from lab.report import build_table
    from lab.sweep import load_results, ordered_trials, trial_run_dir

    exp, study = load_results(folder)
    trials = ordered_trials(exp, study)
    if not trials:
        raise RunError(f"{folder}: the study has no complete trial; run `rlaif sweep` first")
    images = [image(p.stem.replace("_", " "), p) for p in sorted(folder.glob("*.png"))]
    table, table_notes = build_table(folder)
    notes = [] if images else [f"no plots in {folder} yet: `rlaif plot {folder}` draws them"]
    notes += table_notes
    runs = []
    for t in trials:
        run_dir = trial_run_dir(folder, t)
        slug = ", ".join(f"{a}={t.params[a]}" for a in exp.axes if a in t.params)
        runs.append(Run(slug or "default",
                        run_dir))
    return {
        "title": f"sweep {exp.name}",
        "sections": [{"heading": "Summary", "tables": [
            frame_table(f"{exp.name}: one row per setting ({exp.dev_split} split; base = "
                        + ("the first row of each block)" if any(a in DATA_AXES for a in exp.axes)
                           else "first row)"), table)],
            "images": images, "notes": notes}],
        "browser": browser(runs, data),
    }


def rlaif_page(folder: Path, data: str | None) -> dict:
    label = folder / "label"
    sections = [{"heading": "AI labels of the training split (rlaif rm label)",
                 "tables": [metrics_table(f"{label}/metrics.json",
                                          json.loads((label / "metrics.json").read_text()))],
                 "images": [], "notes": []}]
    rm = {"heading": "Reward models (rlaif rm train, rlaif rm eval)", "tables": [],
          "images": [], "notes": []}
    if (folder / "calibration.png").is_file():
        rm["images"].append(image("temperature scaling of the AI labels",
                                  folder / "calibration.png"))
    if (folder / "rm_eval.json").is_file():
        result = json.loads((folder / "rm_eval.json").read_text())
        def ci(r: dict, key: str, ci_key: str) -> str | None:
            if key not in r:
                return None
            lo, hi = r.get(ci_key) or [float("nan")] * 2
            return f"{r[key]:.3f} [{lo:.3f}, {hi:.3f}]"

        flat = [{"model": r.get("name"), "seed": r.get("seed"), "training pairs": r.get("n_train"),
                 "kept epoch": r.get("best_epoch"), "n": r.get("n"),
                 "accuracy [95% CI]": ci(r, "accuracy", "ci"),
                 "high-confidence": ci(r, "accuracy_high", "ci_high"),
                 "length-balanced": ci(r, "length_balanced", "length_balanced_ci"),
                 "prefers longer": r.get("prefers_longer")}
                for r in result.get("rows", [])]
        rm["tables"].append(records_table(
            f"accuracy on held-out human labels ({result.get('test_split', '')} split)", flat))
        for key, caption in (("kinds", "mean and spread over seeds"),
                             ("tests", "each AI-label kind vs the human-label model (seed 0)")):
            if result.get(key):
                rm["tables"].append(records_table(caption, result[key]))
        rest = {k: v for k, v in result.items() if k not in ("rows", "test_split")
                and not isinstance(v, list | dict)}
        if rest:
            rm["tables"].append(metrics_table("rm_eval.json", rest))
    else:
        rm["notes"].append(f"no rm_eval.json in {folder}: run `rlaif rm eval {folder}`")
    if (folder / "rm_curve.png").is_file():
        rm["images"].append(image("learning curve", folder / "rm_curve.png"))
    sections.append(rm)
    rl = {"heading": "A2C policies and win rates (rlaif rl train, rlaif winrate)", "tables": [],
          "images": [], "notes": []}
    runs = sorted(p.parent for p in folder.glob("*/trend.json"))  # A2C folders (not rm_*)
    for run in runs:
        if (run / "curves.png").is_file():
            rl["images"].append(image(f"A2C curves: {run.name}", run / "curves.png"))
        if (run / "trend.json").is_file():
            rl["tables"].append(metrics_table(f"{run.name}/trend.json: did the score rise?",
                                              json.loads((run / "trend.json").read_text())))
    if not runs:
        rl["notes"].append(f"no A2C run in {folder}: `rlaif rl train --rm {folder}/rm_ai "
                           f"--out {folder}/a2c`")
    win = folder / "winrate" / "winrate.json"
    if win.is_file():
        w = json.loads(win.read_text())
        rl["tables"].append(records_table(
            f"win rates on {w.get('n_posts', '?')} held-out posts",
            [{k: v for k, v in r.items() if not isinstance(v, dict)}
             | {"length_controlled": r.get("length_controlled", {}).get("win_rate")}
             for r in w.get("rows", [])]))
        rl["tables"].append(records_table(
            "policies", [{"policy": k, **{a: b for a, b in v.items() if not isinstance(b, list)}}
                         for k, v in w.get("policies", {}).items()]))
        summaries = read_records(folder / "winrate" / "summaries.jsonl")
        if summaries:
            rl["tables"].append(records_table("summaries of the held-out posts", summaries))
    else:
        rl["notes"].append(f"no win rate in {folder / 'winrate'}: `rlaif winrate --out "
                           f"{folder / 'winrate'} --policy NAME=A2C_DIR --judge-rm NAME=RM_DIR`")
    sections.append(rl)
    config = json.loads((label / "config.json").read_text())
    return {"title": f"RLAIF run {folder.name}", "sections": sections,
            "subtitle": "labeler: " + run_line(config),
            "browser": browser([Run("labeler", label)], data)}


# --- the page ------------------------------------------------------------------------------


def embed_json(obj) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' survives unescaped."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def _page_file(name: str) -> str:
    return resources.files("lab.report_page").joinpath(name).read_text(encoding="utf-8")


def render(page: dict) -> str:
    """The HTML of a page dict (title, sections, browser)."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(_page_file("report.html.jinja"))
    return template.render(
        page=page, version=lab.__version__, style=_page_file("report.css"),
        script=_page_file("report.js"), data=embed_json(page["browser"]),
    )


def build_report(folder: str | Path, data: str | None = None) -> Path:
    """Write ``FOLDER/report.html`` for a run, sweep or RLAIF folder; returns its path.

    Args:
        folder: the folder ``rlaif label``, ``rlaif sweep`` or ``rlaif rm label`` wrote.
        data: where the labeled pairs' posts are, if not where the run's config says.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise RunError(f"{folder}: no such folder; pass a run, sweep or RLAIF run folder")
    kind = kind_of(folder)
    page = {"run": run_page, "sweep": sweep_page, "rlaif": rlaif_page}[kind](folder, data)
    page["kind"] = kind
    path = folder / REPORT
    write_text_atomic(path, render(page))
    return path
