"""Registry of the human-preference datasets the lab reads, one module per source.

Each loader module has ``NAME``, ``TASK`` (the pairs' ``task``), ``FOLDER`` (its folder in a
data root such as ``../shared/data``), ``HUB_ID`` (or None), ``detect(path) -> bool`` and
``load(path, skip_bad_rows) -> (pairs, skipped)``; those with a hub copy also have
``load_hub(dataset_id)``, and those whose data can hold reference answers
``with_references(pairs, path) -> pairs`` (see :func:`attach_references`). Adding a dataset is
one new module plus one line in :data:`LOADERS`.

Detection follows the order of :data:`LOADERS`: TL;DR first, so a data root holding several
datasets reads TL;DR unless a task is named.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from lab.datasets import autoj, hh, llmbar, mtbench, pandalm, tldr
from lab.errors import DataError
from lab.pair import Pair

LOADERS: dict[str, ModuleType] = {m.NAME: m for m in (tldr, hh, llmbar, pandalm, autoj,
                                                      mtbench)}
"""Loaders by name, in detection order (the first is the default; a new loader goes last, so
that what an existing path is detected as does not change)."""
DEFAULT = "tldr"


def get(task: str) -> ModuleType:
    """The loader named ``task``; DataError listing the names otherwise."""
    if task not in LOADERS:
        raise DataError(f"unknown dataset task {task!r}; use one of {', '.join(LOADERS)}")
    return LOADERS[task]


def locate(loader: ModuleType, path: Path) -> Path:
    """Where the loader reads: ``path/FOLDER`` when ``path`` is a data root holding that
    folder, else ``path`` itself."""
    if path.is_dir() and (path / loader.FOLDER).is_dir():
        return path / loader.FOLDER
    return path


def detect(path: Path) -> ModuleType:
    """The first loader (in :data:`LOADERS` order) that recognises ``path``; TL;DR if none
    does (its messages then say what is wrong with the file)."""
    for loader in LOADERS.values():
        if loader.detect(locate(loader, path)):
            return loader
    return LOADERS[DEFAULT]


def load(path: Path, task: str | None = None, skip_bad_rows: bool = False,
         include_edits: bool = False) -> tuple[ModuleType, list[Pair], int]:
    """Load the pairs at ``path`` with the named loader, or the detected one.

    Args:
        path: a file, a dataset's folder, or a data root holding dataset folders.
        task: a name from :data:`LOADERS`; None detects it.
        skip_bad_rows: skip malformed rows and count them instead of stopping.
        include_edits: TL;DR only: also read the ``edit_*`` files.

    Returns:
        The loader used, the pairs and the number of rows skipped.
    """
    loader = get(task) if task else detect(path)
    where = locate(loader, path)
    if loader is tldr:
        pairs, skipped = tldr.load(where, skip_bad_rows, include_edits=include_edits)
    elif include_edits:
        raise DataError(f"{path}: include_edits reads TL;DR edit_* files; {loader.NAME} has "
                        "none (leave include_edits off)")
    else:
        pairs, skipped = loader.load(where, skip_bad_rows)
    return loader, pairs, skipped


def attach_references(path: Path, pairs: list[Pair], task: str | None = None,
                      include_edits: bool = False) -> list[Pair]:
    """The pairs loaded from ``path`` with the reference answers their data has (the
    loader's ``with_references``: TL;DR's ``ref`` summaries, MT-Bench's question file);
    unchanged where the loader knows none. Called only for a judge that shows a reference:
    ``Pair.reference`` enters a pair's identity when set, so loading never attaches them.

    Args:
        path: what the pairs were loaded from (as for :func:`load`).
        pairs: those pairs (or a slice of them).
        task: the loader's name; None detects it as :func:`load` does.
        include_edits: TL;DR only: also read the ``edit_*`` files' reference summaries.
    """
    loader = get(task) if task else detect(path)
    if not hasattr(loader, "with_references"):
        return pairs
    where = locate(loader, path)
    if loader is tldr:
        return tldr.with_references(pairs, where, include_edits)
    return loader.with_references(pairs, where)


def hub_id(task: str | None) -> str:
    """The hub id of a loader (TL;DR's for None); DataError where there is no hub copy."""
    loader = get(task or DEFAULT)
    if loader.HUB_ID is None:
        raise DataError(f"{loader.NAME}: no hub copy known to the lab; pass --data PATH or set "
                        f"RLAIF_DATA_DIR to a folder holding {loader.FOLDER}/")
    return loader.HUB_ID


def load_hub(dataset_id: str, task: str | None = None) -> list[Pair]:
    """Load a hub dataset with the named loader, else the one whose ``HUB_ID`` it is, else
    TL;DR (any other id is read as a TL;DR comparisons copy)."""
    if task:
        loader = get(task)
    else:
        loader = next((m for m in LOADERS.values() if m.HUB_ID == dataset_id),
                      LOADERS[DEFAULT])
    if not hasattr(loader, "load_hub"):
        hub_id(loader.NAME)  # raises: no hub copy
    return loader.load_hub(dataset_id)
