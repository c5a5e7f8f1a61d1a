"""LLMBar (Zeng et al. 2024): pairwise sets for checking LLM judges, with processed MT-Bench,
FairEval and LLMEval² human judgments.

Each ``dataset.json`` is one JSON array of ``{input, output_1, output_2, label}`` with
``label`` 1 or 2 (the better output; no ties, no annotator ids). Reads one file, or a folder
holding ``LLMBar/Natural``, ``LLMBar/Adversarial/*`` and ``Processed/*`` (any depth up to 4).
``subset`` names the set: ``Natural``, ``Adversarial/GPTInst``, ``MT-Bench``, ``FairEval``,
``LLMEval2``. The LLMBar sets' labels are expert-curated, the Processed ones human votes
(MT-Bench: expert majority, ties dropped).
"""

from __future__ import annotations

from pathlib import Path

from lab.datasets.rows import (
    choice_field,
    files_in,
    has_fields,
    instruction_pair,
    read_rows,
    text_field,
)
from lab.errors import DataError
from lab.pair import Pair, content_key, post_key

NAME = "llmbar"
TASK = "instruction"
FOLDER = "llmbar"
HUB_ID = None  # princeton-nlp/LLMBar is a loading script, which `datasets` >= 4 refuses
FIELDS = ("input", "output_1", "output_2", "label")
PATTERNS = tuple("*/" * depth + "dataset.json" for depth in range(5))
UPSTREAM = "github.com/princeton-nlp/LLMBar, Dataset/"


def files(folder: Path) -> list[Path]:
    """The folder's ``dataset.json`` files (up to 4 folders down) with LLMBar fields."""
    return [f for f in files_in(folder, PATTERNS) if has_fields(f, *FIELDS)]


def detect(path: Path) -> bool:
    """A JSON file whose first row has ``input``, ``output_1``, ``output_2``, ``label``; a
    folder holding such ``dataset.json`` files."""
    if path.is_file():
        return has_fields(path, *FIELDS)
    return bool(files(path))


def subset_of(file: Path) -> str:
    """The set a ``dataset.json`` belongs to, from its folders: the part after the last
    ``Processed`` or ``LLMBar`` folder (``Adversarial/GPTInst``), else its folder's name."""
    parts = file.parent.parts
    for root in ("Processed", "LLMBar"):
        if root in parts[:-1]:
            at = len(parts) - 1 - parts[::-1].index(root)
            return "/".join(parts[at + 1:]).replace("LLMEval^2", "LLMEval2")
    return file.parent.name


def load(path: Path, skip_bad_rows: bool = False) -> tuple[list[Pair], int]:
    """Load LLMBar-format sets from a ``dataset.json`` or a folder of them.

    Args:
        path: a ``dataset.json``, or a folder (e.g. ``llmbar/``).
        skip_bad_rows: skip malformed rows and count them instead of stopping.

    Returns:
        The pairs (``subset`` = the set) and the number of rows skipped.
    """
    found = [path] if path.is_file() else files(path)
    if not found:
        raise DataError(f"{path}: no LLMBar dataset.json files; pass --data with a copy of "
                        f"{UPSTREAM}")
    pairs, skipped = [], 0
    for file in found:
        subset = subset_of(file)
        got, bad = read_rows(file, lambda row, where, s=subset: parse_row(row, where, s),
                             skip_bad_rows)
        pairs.extend(got)
        skipped += bad
    return pairs, skipped


def parse_row(row: dict, source: str, subset: str = "") -> Pair:
    """Turn one LLMBar row into a :class:`Pair` (label 1 -> human 1.0, label 2 -> 0.0).

    The outputs are kept verbatim (code indentation matters); the input is stripped.
    """
    text = text_field(row, "input").strip()
    if not text:
        raise DataError("field 'input' is empty")
    first, second = text_field(row, "output_1"), text_field(row, "output_2")
    human = 1.0 if choice_field(row, "label", (1, 2)) == 1 else 0.0
    return instruction_pair(content_key(NAME, text, first, second, human),
                            "lb" + post_key(text), text, first, second, human, TASK, source,
                            subset)
