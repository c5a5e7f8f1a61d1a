"""A labeling run: data -> prompts -> backend -> preference -> metrics, written to a folder.

``DIR/config.json`` (resolved, reloadable), ``DIR/labels.jsonl`` (one record per pair,
appended and flushed as each pair finishes) and ``DIR/metrics.json``. A run that stops part way
keeps every finished pair; started again with the same folder and config it labels only the
missing pairs. A different config in the same folder is refused rather than mixed in.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

from lab import data as data_mod
from lab import metrics
from lab.backends import Backend, batch_pairs, make_backend
from lab.cache import LabelCache
from lab.config import RunConfig
from lab.errors import RunError  # noqa: F401  (re-exported)
from lab.label import Labeler
from lab.prompts import choose_exemplars


def write_json_atomic(path: Path, obj) -> None:
    """Write JSON to a temp file beside ``path`` and rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def write_csv_atomic(path: Path, rows: list[dict], fields: list[str]) -> None:
    """Write rows as CSV to a temp file beside ``path`` and rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def read_records(path: Path) -> list[dict]:
    """Records of a labels.jsonl; a torn last line (a kill mid-write) is cut off the file."""
    if not path.is_file():
        return []
    records, good_bytes = [], 0
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                records.append(json.loads(raw))
            except json.JSONDecodeError:
                break
            good_bytes += len(raw)
    if good_bytes < path.stat().st_size:
        with open(path, "r+b") as fh:
            fh.truncate(good_bytes)
    return records


def prepare(config: RunConfig) -> tuple[list[data_mod.Pair], int, list]:
    """Load and slice the data and draw the exemplars: (pairs, skipped rows, exemplars)."""
    d = config.data
    source = data_mod.resolve_data_path(d.path)
    everything, skipped = data_mod.load_pairs(source, skip_bad_rows=d.skip_bad_rows)
    pairs = data_mod.select(everything, d.confidence, d.split, d.n, d.seed)
    if not pairs:
        raise RunError(f"{source}: no pairs left after confidence={d.confidence} split={d.split}")
    if any(p.task != "summarize" for p in pairs):
        raise RunError(
            f"{source}: HH-RLHF dialogue rows load as pairs, but the prompts in prompts/ rate "
            "summaries; label TL;DR comparisons (--data .../summarize_from_feedback_comparisons)"
        )
    exemplars = choose_exemplars(
        data_mod.exemplar_pool(everything), config.prompt.shots, d.seed,
        config.prompt.max_exemplar_chars,
    )
    return pairs, skipped, exemplars


def label_pairs(
    labeler: Labeler, pairs: list, out: Path, done: dict[str, dict], progress: bool = True,
    batch: int = 1,
) -> list[dict]:
    """Label the pairs not yet in ``done``, appending each record to ``out``/labels.jsonl.

    Pairs go to the backend ``batch`` at a time (:meth:`Labeler.label_many`); each record is
    still written and flushed on its own line, so a kill loses at most the chunk in flight.
    """
    todo = [p for p in pairs if p.key not in done]
    with open(out / "labels.jsonl", "a", encoding="utf-8") as fh, tqdm(
        total=len(todo), desc="labeling", unit="pair", disable=not progress, file=sys.stderr
    ) as bar:
        size = max(1, batch)
        for chunk in (todo[i:i + size] for i in range(0, len(todo), size)):
            for pair, record in zip(chunk, labeler.label_many(chunk)):
                fh.write(json.dumps(record) + "\n")
                fh.flush()
                done[pair.key] = record
                bar.update(1)
    return [done[p.key] for p in pairs]


def run_label(
    config: RunConfig,
    out: str | Path,
    backend: Backend | None = None,
    cache: LabelCache | None = None,
    progress: bool = True,
) -> dict:
    """Label a data slice into a run folder and score it; resumes a partial run.

    Args:
        config: the resolved run configuration.
        out: run folder (created if needed).
        backend: an already built backend (else built from ``config.backend``).
        cache: per-pair label cache shared across runs (default: in memory, this run only).
        progress: show a progress bar.

    Returns:
        The metrics (also written to ``out/metrics.json``).
    """
    out = Path(out)
    cfg_path = out / "config.json"
    # parsed rather than compared as text, so keys added to the config later (with defaults)
    # do not orphan older run folders
    if cfg_path.is_file() and RunConfig.from_dict(json.loads(cfg_path.read_text()),
                                                  str(cfg_path)) != config:
        raise RunError(
            f"{cfg_path} holds a different config; use a new --out or delete that folder"
        )
    pairs, skipped, exemplars = prepare(config)
    done = {r["key"]: r for r in read_records(out / "labels.jsonl")}
    if backend is None and any(p.key not in done for p in pairs):
        backend = make_backend(config.backend)
    labeler = Labeler(backend, config.prompt, config.decode, exemplars, cache)
    if backend is not None:
        labeler.prompt_for(pairs[0])  # a template error stops here, before anything is written
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(cfg_path, config.to_dict())
    records = label_pairs(labeler, pairs, out, done, progress,
                          batch=batch_pairs(config.backend))
    result = metrics.compute(records, seed=config.data.seed)
    result["skipped_rows"] = skipped
    if backend is not None:
        result["model"] = backend.identity
    else:  # nothing was left to label: keep the identity the earlier run recorded
        previous = out / "metrics.json"
        old = json.loads(previous.read_text()) if previous.is_file() else {}
        result["model"] = old.get("model", config.backend.model)
    write_json_atomic(out / "metrics.json", result)
    return result
