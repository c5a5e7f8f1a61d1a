"""A labeling run: data -> prompts -> backend -> preference -> metrics, written to a folder.

``DIR/run.json`` (written first: what the folder holds, see :func:`identity`),
``DIR/config.json`` (resolved, reloadable), ``DIR/labels.jsonl`` (one record per pair,
appended and flushed as each pair finishes) and ``DIR/metrics.json``. A run that stops part way
keeps every finished pair; started again with the same folder it labels only the missing pairs,
matched by their content key. The folder is identified by the resolved config plus content
hashes of the data slice and the templates: any difference is refused with a one-line error
naming it, rather than mixed in. One process writes a folder at a time (:func:`lab.io.claim`);
files the lab did not write are never overwritten or cut.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from tqdm import tqdm

from lab import data as data_mod
from lab import metrics
from lab.backends import Backend, batch_pairs, make_backend
from lab.cache import LabelCache
from lab.config import RunConfig
from lab.errors import ConfigError, DataError, RunError
from lab.io import (  # noqa: F401  (write_* re-exported)
    LOCK_NAME,
    append_jsonl,
    claim,
    read_jsonl,
    write_csv_atomic,
    write_json_atomic,
)
from lab.judges import judge_class
from lab.label import Labeler, label_problem, precision_of
from lab.machine import cpu_info
from lab.prompts import choose_exemplars, template_digests

RUN_FILE = "run.json"
WRITTEN_BY = "rlaif-lab label run"
LAB_FILES = ("config.json", "labels.jsonl", "metrics.json")


def read_records(path: Path, cut_torn_tail: bool = False) -> list[dict]:
    """Records of a labels.jsonl (see :func:`lab.io.read_jsonl`); only the folder's writer
    may cut a torn last line."""
    return read_jsonl(Path(path), cut_torn_tail)


def prepare(config: RunConfig) -> tuple[list[data_mod.Pair], int, list]:
    """Load and slice the data and draw the exemplars: (pairs, skipped rows, exemplars).

    For a judge that shows a reference answer the slice's pairs get the references their
    data holds and those without one are skipped (counted), before the sample of ``data.n``.
    """
    d = config.data
    source = data_mod.resolve_data_path(d.path, d.task)
    everything, skipped = data_mod.load_pairs(source, d.skip_bad_rows, d.include_edits, d.task)
    pairs = data_mod.select(everything, d.confidence, d.split, None, d.seed, d.subset)
    if not pairs:
        known = sorted({p.subset for p in everything if p.subset})
        subset = (f" subset={d.subset} (subsets here: {', '.join(known) or 'none'})"
                  if d.subset else "")
        hint = ("; only TL;DR has the 9-point confidence: set data.confidence to all "
                "(--confidence all)") if d.confidence == "high" and not any(
                    p.confidence for p in everything) else ""
        raise RunError(f"{source}: no pairs left after confidence={d.confidence} "
                       f"split={d.split}{subset}{hint}")
    judge = judge_class(config.prompt.judge)
    if judge.needs_reference or d.with_reference:
        # attached only here: a reference changes a pair's identity
        pairs = data_mod.attach_references(source, pairs, d.task, d.include_edits)
        pairs, skipped = with_references(
            pairs, skipped, source,
            f"the {judge.name} judge" if judge.needs_reference else "data.with_reference")
    # the seeded sample of n last (as select draws it), so a judge that needs a reference
    # labels n pairs that have one
    pairs = data_mod.select(pairs, "all", "all", d.n, d.seed)
    judge.check_prompt(config.prompt, "config", task_family(pairs, source))
    exemplars = choose_exemplars(
        data_mod.exemplar_pool(everything), config.prompt.shots, d.seed,
        config.prompt.max_exemplar_chars,
    )
    return pairs, skipped, exemplars


def task_family(pairs: list, source: str) -> str:
    """The task family (``summarize``, ``dialogue``, ``instruction``) all the pairs share; a
    slice that mixes families is a one-line error (each family has its own prompts)."""
    families = sorted({p.task for p in pairs})
    if len(families) > 1:
        raise DataError(f"{source}: the slice mixes {' and '.join(families)} pairs, which have "
                        "different prompts; label one dataset at a time (--task NAME)")
    return families[0]


def with_references(pairs: list, skipped: int, source: str, wanted: str) -> tuple[list, int]:
    """The pairs that have a reference answer, for a judge that shows one; those without one
    are skipped and counted (none with one is a one-line error)."""
    kept = [p for p in pairs if p.reference]
    if not kept:
        raise DataError(f"{source}: no pair in this slice has a reference answer, which "
                        f"{wanted} asks for; use data with references (MT-Bench judgments "
                        "with FastChat's question.jsonl beside them, TL;DR comparisons with "
                        "'ref' summaries) or another --judge")
    if len(kept) < len(pairs):
        print(f"{source}: {len(pairs) - len(kept)} of {len(pairs)} pairs have no reference "
              f"answer; {wanted} skips them (counted in skipped_rows)", file=sys.stderr)
    return kept, skipped + len(pairs) - len(kept)


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
                append_jsonl(fh, record)
                done[pair.key] = record
                bar.update(1)
    return [done[p.key] for p in pairs]


def check_precision(path: Path, records, precision: str) -> None:
    """Refuse to add labels computed at another precision to a run folder's labels.

    A record without ``precision`` predates the field: its logits were computed in the model's
    dtype, which matches only a run that computes nothing in a 16-bit type.
    """
    legacy_ok = "16" not in precision
    for r in records:
        theirs = r.get("precision")
        if theirs != precision and not (theirs is None and legacy_ok):
            raise RunError(
                f"{path}: pair {r['key']} was labeled with logits in "
                f"{theirs or 'the model dtype (before fp32 scoring heads)'}, this run computes "
                f"them in {precision}; use a new --out (or the old --score-dtype/--dtype)"
            )


def identity(config: RunConfig, pairs: list, exemplars: list) -> dict:
    """What a run folder holds: the resolved config and content hashes of the data slice
    (every pair's key and human label, and the exemplars) and of the templates."""
    # sorted: the same pairs in another file order are the same slice (matched by content)
    slice_ = sorted([p.key, p.human, p.confidence] for p in pairs)
    slice_ += [[e.text, e.first, e.second, e.label] for e in exemplars]
    digest = hashlib.sha256(json.dumps(slice_).encode()).hexdigest()
    return {"written_by": WRITTEN_BY, "config": config.identity_dict(),
            "data": {"pairs": len(pairs), "sha256": digest},
            "templates": template_digests(config.prompt, task_family(pairs, "data"))}


def _first_difference(old: dict, new: dict, prefix: str = "") -> str | None:
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = _first_difference(a, b, f"{prefix}{key}.")
            if found:
                return found
        elif a != b:
            return f"{prefix}{key} is {a!r} there, {b!r} now"
    return None


def check_folder(out: Path, ident: dict) -> bool:
    """Refuse a folder that holds another run or files the lab did not write.

    Returns:
        True if the folder already holds this run (``run.json`` matches), False if it is new.
    """
    run_file = out / RUN_FILE
    if not run_file.is_file():
        foreign = [name for name in LAB_FILES if (out / name).exists()]
        if foreign:
            raise RunError(
                f"{out / foreign[0]} was not written by this lab (no {RUN_FILE} beside it: "
                "another program's file, or a run folder of an older version); move it away "
                "or pass another --out"
            )
        return False
    try:
        old = json.loads(run_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        old = None
    if not isinstance(old, dict) or old.get("written_by") != WRITTEN_BY:
        raise RunError(f"{run_file} is not a run record this lab wrote; move it away or pass "
                       "another --out")
    fix = "pass a new --out (or delete that folder to start it again)"
    try:  # parsed, so keys added to the config later (with defaults) do not orphan old folders
        then = RunConfig.from_dict(old.get("config") or {}, str(run_file)).identity_dict()
    except ConfigError as err:
        raise RunError(f"{err}; {fix}") from None
    diff = _first_difference(then, ident["config"])
    if diff:
        raise RunError(f"{out} holds a run with another config ({diff}); {fix}")
    if old.get("data") != ident["data"]:
        was = (old.get("data") or {}).get("pairs")
        raise RunError(
            f"{out} was labeled on another data slice ({was} pairs then, "
            f"{ident['data']['pairs']} now, different content: the data file changed); {fix}"
        )
    diff = _first_difference(old.get("templates") or {}, ident["templates"])
    if diff:
        name = diff.split(" is ")[0]
        raise RunError(f"{out}: template '{name}' changed since this folder was labeled; {fix}")
    return True


def load_done(out: Path, pairs: list) -> dict[str, dict]:
    """The finished records of a run folder by key, each checked (only its writer calls this).

    A torn last line (a kill mid-write) is cut; anything else wrong is a RunError naming the
    file and line.
    """
    path = out / "labels.jsonl"
    wanted = {p.key for p in pairs}
    done: dict[str, dict] = {}
    fix = "restore the file or pass a new --out"
    for lineno, record in enumerate(read_records(path, cut_torn_tail=True), 1):
        key = record.get("key")
        if not isinstance(key, str):
            raise RunError(f"{path}:{lineno}: record has no 'key'; {fix}")
        problem = label_problem(record)
        if problem:
            raise RunError(f"{path}:{lineno}: {problem}; {fix}")
        if key in done:
            raise RunError(f"{path}:{lineno}: a second record of pair {key}; {fix}")
        if key not in wanted:
            raise RunError(f"{path}:{lineno}: pair {key} is not in this data slice; {fix}")
        done[key] = record
    return done


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
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file, not a folder; pass a folder path")
    pairs, skipped, exemplars = prepare(config)
    created = not out.exists()
    try:
        with claim(out, "run"):
            return _run_in(config, out, pairs, skipped, exemplars, backend, cache, progress)
    except BaseException:
        if created and out.is_dir() and [p.name for p in out.iterdir()] == [LOCK_NAME]:
            (out / LOCK_NAME).unlink()  # nothing was written: leave no empty folder behind
            out.rmdir()
        raise


def _run_in(config: RunConfig, out: Path, pairs: list, skipped: int, exemplars: list,
            backend: Backend | None, cache: LabelCache | None, progress: bool) -> dict:
    ident = identity(config, pairs, exemplars)
    existing = check_folder(out, ident)
    done = load_done(out, pairs) if existing else {}
    todo = [p for p in pairs if p.key not in done]
    if backend is None and todo:
        backend = make_backend(config.backend)
    labeler = Labeler(backend, config.prompt, config.decode, exemplars, cache)
    if backend is not None:
        labeler.prompt_for(pairs[0])  # a template error stops here, before anything is written
        check_precision(out / "labels.jsonl", done.values(), precision_of(backend))
    too_long = {p.key: why for p in todo if (why := labeler.too_long(p))}
    if too_long and not config.data.skip_bad_rows:
        pair = next(p for p in todo if p.key in too_long)
        raise DataError(f"{pair.source}: {too_long[pair.key]}; shorten or remove that row, "
                        "or pass --skip-bad-rows")
    pairs = [p for p in pairs if p.key not in too_long]
    skipped += len(too_long)
    if not pairs:
        raise DataError(f"{config.data.path}: every pair's prompt is longer than the model's "
                        "context (all skipped); use a model with a longer context")
    if not existing:
        write_json_atomic(out / RUN_FILE, ident)
    write_json_atomic(out / "config.json", config.to_dict())
    records = label_pairs(labeler, pairs, out, done, progress,
                          batch=batch_pairs(config.backend))
    result = metrics.compute(records, seed=config.data.seed)
    result["skipped_rows"] = skipped
    if backend is not None:
        # seconds per pair mean little without the machine and the number format
        result.update(model=backend.identity, precision=precision_of(backend), **cpu_info())
    else:  # nothing was left to label: keep what the earlier run recorded
        previous = out / "metrics.json"
        old = json.loads(previous.read_text()) if previous.is_file() else {}
        result["model"] = old.get("model", config.backend.model)
        result.update({k: old[k] for k in ("precision", "cpu", "cpu_flags", "cores") if k in old})
    write_json_atomic(out / "metrics.json", result)
    return result
