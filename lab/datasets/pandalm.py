"""PandaLM human test set (Wang et al. 2023): three annotators per instruction-following pair.

``testset-v1.json`` is one JSON array of rows with ``instruction``, ``input`` (may be
empty), ``response1``, ``response2``, ``cmp_key`` (the model pairing) and ``annotator1..3``,
each 1 (response1 better), 2 (response2 better) or 0 (tie). ``votes`` keeps the three as
probabilities that the first response is better (a tie 0.5); ``human`` is their mean.
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

NAME = "pandalm"
TASK = "instruction"
FOLDER = "pandalm_testset"
FILE = "testset-v1.json"
HUB_ID = None  # no hub copy known to the lab
ANNOTATORS = ("annotator1", "annotator2", "annotator3")
VOTE = {1: 1.0, 2: 0.0, 0: 0.5}
"""An annotator's answer as the probability that response1 is better."""
UPSTREAM = "github.com/WeOpenML/PandaLM, data/testset-v1.json"


def files(folder: Path) -> list[Path]:
    """``testset-v1.json`` if the folder has it, else its ``*.json`` files with annotators."""
    if (folder / FILE).is_file():
        return [folder / FILE]
    return [f for f in files_in(folder, ("*.json",)) if has_fields(f, "response1", *ANNOTATORS)]


def detect(path: Path) -> bool:
    """A JSON file whose first row has ``response1`` and ``annotator1..3``; a folder with
    ``testset-v1.json`` or such a file."""
    if path.is_file():
        return has_fields(path, "response1", *ANNOTATORS)
    return bool(files(path))


def load(path: Path, skip_bad_rows: bool = False) -> tuple[list[Pair], int]:
    """Load the PandaLM test set from its file or folder.

    Args:
        path: ``testset-v1.json`` or a folder holding it.
        skip_bad_rows: skip malformed rows and count them instead of stopping.

    Returns:
        The pairs (``subset`` = ``cmp_key``) and the number of rows skipped.
    """
    found = [path] if path.is_file() else files(path)
    if not found:
        raise DataError(f"{path}: no {FILE}; pass --data with a copy of {UPSTREAM}")
    return read_files(found, parse_row, skip_bad_rows)


def _response(row: dict, name: str) -> str:
    value = row.get(name)
    if isinstance(value, bool):  # six upstream rows hold JSON true for the answer "True"
        return str(value)
    return text_field(row, name)


def parse_row(row: dict, source: str) -> Pair:
    """Turn one PandaLM row into a :class:`Pair`.

    ``text`` is the instruction, then ``\\n\\nInput:\\n`` and the input where there is one
    (the input alone where the instruction is blank, as in one upstream row).
    A response stored as JSON ``true``/``false`` (six upstream rows) is read as the text
    ``True``/``False``; responses are otherwise verbatim (some are empty).
    """
    instruction = text_field(row, "instruction").strip()
    given = row.get("input") or ""
    if not isinstance(given, str):
        raise DataError(f"field 'input' must be a string, found {type(given).__name__}")
    given = given.strip()
    if not instruction and not given:
        raise DataError("fields 'instruction' and 'input' are both empty")
    text = "\n\nInput:\n".join(part for part in (instruction, given) if part)
    first, second = _response(row, "response1"), _response(row, "response2")
    raw = tuple(choice_field(row, name, (0, 1, 2)) for name in ANNOTATORS)
    votes = tuple(VOTE[v] for v in raw)
    cmp_key = row.get("cmp_key") or ""
    return instruction_pair(content_key(NAME, text, first, second, *raw),
                            "pl" + post_key(text), text, first, second, sum(votes) / len(votes),
                            TASK, source, str(cmp_key), votes)
