"""Stage 8 of the pipeline: AI labels for reward-model training (RLAIF section 2.3).

The exported labeler (``best.yaml``) labels the *training* split: every TL;DR comparison whose
post is not in the test split (``split=train``: exemplar pool + dev; every confidence level),
so the reward model is scored later on posts it never saw. Labeling is an ordinary resumable
run folder (``DIR/label/``) that goes through the per-pair label cache, so pairs a sweep has
already labeled with the same labeler cost nothing.

Written next to it:
  * ``DIR/pairs.jsonl``: one row per comparison with the post, both summaries, the AI soft
    label ``ai`` and the human label ``human`` (both: probability that ``first`` is better);
    the reward model trains on either column.
  * ``DIR/trl_preferences.jsonl``: the same pairs in the preference format TRL's
    ``RewardTrainer`` reads (``prompt``, ``chosen``, ``rejected``), chosen by the AI label,
    plus ``score``: the AI's probability that ``chosen`` is better.
  * ``DIR/calibration.json`` and ``DIR/calibration.png``: a temperature fitted on the labeled
    pairs of the exemplar-pool split against their human labels (:mod:`lab.calibration`),
    scored on the dev-split pairs it was not fitted on; ``pairs.jsonl`` then carries the
    calibrated label ``ai_calibrated`` as well. With fewer than 20 pool pairs labeled there is
    no calibration and ``calibration.json`` says so.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from lab import calibration
from lab import data as data_mod
from lab.cache import LabelCache
from lab.config import RunConfig
from lab.io import read_jsonl, write_json_atomic, write_text_atomic
from lab.metrics import expected_calibration_error
from lab.prompts import render_template
from lab.run import RunError, read_records, run_label

PAIRS_FILE = "pairs.jsonl"
TRL_FILE = "trl_preferences.jsonl"
CALIBRATION_FILE = "calibration.json"


def post_text(pair: data_mod.Pair) -> str:
    """The post as reward models and policies read it (``prompts/post.jinja``)."""
    return render_template("post.jinja", subreddit=pair.subreddit, title=pair.title,
                           post=pair.text)


def training_config(labeler: RunConfig, data_path: str | None, n: int | None,
                    seed: int = 0) -> RunConfig:
    """The labeler's config with its data slice replaced by the training split."""
    d = dataclasses.replace(
        labeler.data, path=data_path or labeler.data.path, confidence="all", split="train",
        n=n, seed=seed,
    )
    return dataclasses.replace(labeler, data=d)


def label_training_pairs(
    labeler: RunConfig,
    out: str | Path,
    data_path: str | None = None,
    n: int | None = None,
    cache: LabelCache | None = None,
    backend=None,
    progress: bool = True,
) -> dict:
    """Label the training split with a labeler config; write pairs.jsonl and the TRL file.

    Args:
        labeler: the exported labeler (prompt, backend, decoding; its data slice is replaced).
        out: the reward-model folder (``out/label/`` is the resumable labeling run).
        data_path: TL;DR comparisons (default: the labeler's, then ``$RLAIF_DATA_DIR``).
        n: label a seeded sample of at most n training pairs (None: all of them).
        cache: the per-pair label cache.
        backend: an already built backend (tests); else built from the config.
        progress: show a progress bar.

    Returns:
        The labeling run's metrics (AI labels against the human labels of the training pairs).
    """
    out = Path(out)
    config = training_config(labeler, data_path, n)
    result = run_label(config, out / "label", backend=backend, cache=cache, progress=progress)
    pairs, _ = data_mod.load_pairs(data_mod.resolve_data_path(config.data.path),
                                   config.data.skip_bad_rows, config.data.include_edits)
    by_key = {p.key: p for p in pairs}
    records = read_records(out / "label" / "labels.jsonl")
    if not records:
        raise RunError(f"{out / 'label'}: no labels were written")
    rows, trl = [], []
    for r in records:
        pair = by_key[r["key"]]
        post = post_text(pair)
        rows.append({"key": pair.key, "post_id": pair.post_id, "post": post,
                     "first": pair.first, "second": pair.second, "ai": r["p"],
                     "human": pair.human, "confidence": pair.confidence,
                     "split": data_mod.split_of(pair.post_id)})
        first_wins = r["p"] >= 0.5
        chosen, rejected = (pair.first, pair.second) if first_wins else (pair.second, pair.first)
        trl.append({"prompt": post + "\nTL;DR:", "chosen": " " + chosen,
                    "rejected": " " + rejected, "score": max(r["p"], 1 - r["p"])})
    report = calibrate(rows)
    write_json_atomic(out / CALIBRATION_FILE, report)
    if report["scale"] is not None:
        from lab.plots import plot_calibration

        plot_calibration(report, out / "calibration.png")
    write_jsonl_atomic(out / PAIRS_FILE, rows)
    write_jsonl_atomic(out / TRL_FILE, trl)
    return result


def calibrate(rows: list[dict], fit_split: str = "pool") -> dict:
    """Fit a temperature on the rows of ``fit_split``, add ``ai_calibrated`` to every row (in
    place) and return the report: scale, pairs, and NLL / ECE / reliability bins before and
    after, on the fitted rows and on the other rows (held out from the fit)."""
    fit = [r for r in rows if r["split"] == fit_split]
    held = [r for r in rows if r["split"] != fit_split]
    report: dict = {"fit_split": fit_split, "n_fit": len(fit), "n_held_out": len(held),
                    "scale": None, "reason": ""}
    if len(fit) < calibration.MIN_PAIRS:
        report["reason"] = (f"only {len(fit)} labeled pairs of the {fit_split} split (at least "
                            f"{calibration.MIN_PAIRS} needed); label more pairs (drop --n)")
        return report
    scale = calibration.fit_scale(np.array([r["ai"] for r in fit]),
                                  np.array([r["human"] for r in fit]))
    report["scale"] = scale
    for r in rows:
        r["ai_calibrated"] = float(calibration.apply(np.array([r["ai"]]), scale)[0])
    for name, part in (("fit", fit), ("held_out", held)):
        if not part:
            continue
        raw = np.array([r["ai"] for r in part])
        cal = np.array([r["ai_calibrated"] for r in part])
        human = np.array([r["human"] for r in part])
        report[name] = {
            "n": len(part),
            "nll_raw": calibration.nll(raw, human), "nll_calibrated": calibration.nll(cal, human),
            "ece_raw": expected_calibration_error(raw, human),
            "ece_calibrated": expected_calibration_error(cal, human),
            "bins_raw": calibration.reliability_bins(raw, human),
            "bins_calibrated": calibration.reliability_bins(cal, human),
        }
    return report


def write_jsonl_atomic(path: Path, rows: list[dict]) -> None:
    """Write JSON lines to a temp file beside ``path`` and rename it into place."""
    write_text_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))


def read_pairs(folder: str | Path) -> list[dict]:
    """The rows of ``folder/pairs.jsonl`` (written by ``rlaif rm label``)."""
    path = Path(folder) / PAIRS_FILE
    if not path.is_file():
        raise RunError(f"{path}: not found; run `rlaif rm label --config best.yaml --out "
                       f"{folder}` first")
    return read_jsonl(path)


def held_out_pairs(folder: str | Path, confidence: str = "all") -> list[dict]:
    """Human-labeled pairs of the test split (posts the reward model never saw)."""
    config = RunConfig.load(Path(folder) / "label" / "config.json")
    source = data_mod.resolve_data_path(config.data.path)
    pairs, _ = data_mod.load_pairs(source, config.data.skip_bad_rows, config.data.include_edits)
    test = data_mod.select(pairs, confidence, "test")
    return [{"key": p.key, "post_id": p.post_id, "post": post_text(p), "first": p.first,
             "second": p.second, "human": p.human, "confidence": p.confidence} for p in test]
