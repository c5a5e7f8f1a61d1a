"""Auto-J pairwise test set (Li et al. 2023): real user queries in 58 scenarios, two LLM
responses each, one human label with ties.

``testdata_pairwise.jsonl`` rows have ``scenario``, ``prompt``, ``response 1``,
``response 2`` (keys with a space) and ``label``: 0 = response 1 preferred, 1 = response 2,
2 = tie (human 0.5). ``subset`` is the scenario.
"""

from __future__ import annotations

from pathlib import Path

from lab.datasets.rows import (
    choice_field,
    files_in,
    has_fields,
    instruction_pair,
    read_files,
    text_field,
)
from lab.errors import DataError
from lab.pair import Pair, content_key, post_key

NAME = "autoj"
TASK = "instruction"
FOLDER = "autoj_pairwise_test"
FILE = "testdata_pairwise.jsonl"
HUB_ID = None  # no hub copy known to the lab
FIELDS = ("prompt", "response 1", "response 2", "label")
HUMAN = {0: 1.0, 1: 0.0, 2: 0.5}
"""Auto-J's label as the probability that response 1 is better."""
UPSTREAM = "github.com/GAIR-NLP/auto-j, data/test/testdata_pairwise.jsonl"


def files(folder: Path) -> list[Path]:
    """``testdata_pairwise.jsonl`` if the folder has it, else its ``*.jsonl`` files with
    Auto-J fields."""
    if (folder / FILE).is_file():
        return [folder / FILE]
    return [f for f in files_in(folder, ("*.jsonl",)) if has_fields(f, *FIELDS)]


def detect(path: Path) -> bool:
    """A file whose first row has ``prompt``, ``response 1``, ``response 2``, ``label``; a
    folder with ``testdata_pairwise.jsonl`` or such a file."""
    if path.is_file():
        return has_fields(path, *FIELDS)
    return bool(files(path))


def load(path: Path, skip_bad_rows: bool = False) -> tuple[list[Pair], int]:
    """Load the Auto-J pairwise test set from its file or folder.

    Args:
        path: ``testdata_pairwise.jsonl`` or a folder holding it.
        skip_bad_rows: skip malformed rows and count them instead of stopping.

    Returns:
        The pairs (``subset`` = scenario) and the number of rows skipped.
    """
    found = [path] if path.is_file() else files(path)
    if not found:
        raise DataError(f"{path}: no {FILE}; pass --data with a copy of {UPSTREAM}")
    return read_files(found, parse_row, skip_bad_rows)


def parse_row(row: dict, source: str) -> Pair:
    """Turn one Auto-J row into a :class:`Pair` (responses verbatim, prompt stripped)."""
    text = text_field(row, "prompt").strip()
    if not text:
        raise DataError("field 'prompt' is empty")
    first, second = text_field(row, "response 1"), text_field(row, "response 2")
    human = HUMAN[choice_field(row, "label", (0, 1, 2))]
    scenario = text_field(row, "scenario")
    return instruction_pair(content_key(NAME, scenario, text, first, second, human),
                            "aj" + post_key(text), text, first, second, human, TASK, source,
                            scenario)
