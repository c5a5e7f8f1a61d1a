"""Anthropic HH-RLHF (Bai et al. 2022): crowdworker choices between two assistant replies.

Each row holds the whole transcript twice, ``chosen`` and ``rejected``, which share the
dialogue up to the final assistant turn. Reads one ``*.jsonl(.gz)`` file, or a folder of the
split folders (``helpful-base/test.jsonl.gz``...), or the hub id ``Anthropic/hh-rlhf``.

The dialogue (its ``Human:``/``Assistant:`` turns kept as they read) becomes ``text``; which
reply is shown first is a coin flip seeded by :data:`ORDER_SEED` on a hash of the row's
content, so the file's chosen-first order cannot carry the label and the same row always
lands the same way.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from lab.datasets.rows import field, files_in, has_fields, hub_rows, read_rows
from lab.errors import DataError
from lab.pair import Pair, content_key

NAME = "hh"
TASK = "dialogue"
FOLDER = "hh_rlhf_test"
HUB_ID = "Anthropic/hh-rlhf"
SUBSETS = ("harmless-base", "helpful-base", "helpful-online", "helpful-rejection-sampled")
"""The published splits with preference pairs (folder names, hub ``data_dir``)."""
ORDER_SEED = 0
"""Seed of the coin that puts the chosen reply first or second."""
MARKER = "\n\nAssistant:"
PATTERNS = ("*.jsonl", "*.jsonl.gz", "*/test.jsonl", "*/test.jsonl.gz")


def files(folder: Path) -> list[Path]:
    """A folder's HH files: its own ``*.jsonl(.gz)`` and each split folder's ``test`` file
    (name a ``train`` file to read it)."""
    return [f for f in files_in(folder, PATTERNS) if has_fields(f, "chosen", "rejected")]


def detect(path: Path) -> bool:
    """A file whose first row has ``chosen`` and ``rejected``; a folder holding one."""
    if path.is_file():
        return has_fields(path, "chosen", "rejected")
    return bool(files(path))


def load(path: Path, skip_bad_rows: bool = False) -> tuple[list[Pair], int]:
    """Load HH-RLHF comparisons from a file or a folder of split folders.

    Args:
        path: a ``*.jsonl(.gz)`` file, or a folder (e.g. ``hh_rlhf_test/``).
        skip_bad_rows: skip malformed rows and count them instead of stopping.

    Returns:
        The pairs (``subset`` = the split folder's name) and the number of rows skipped.
    """
    found = [path] if path.is_file() else files(path)
    if not found:
        raise DataError(f"{path}: no HH-RLHF files (*/test.jsonl.gz with chosen/rejected rows); "
                        "pass --data with a split file")
    pairs, skipped = [], 0
    for file in found:
        subset = file.parent.name if file.parent.name in SUBSETS else ""
        got, bad = read_rows(file, lambda row, where, s=subset: parse_row(row, where, s),
                             skip_bad_rows)
        pairs.extend(got)
        skipped += bad
    return pairs, skipped


def load_hub(dataset_id: str) -> list[Pair]:
    """The test split of every subset of a hub copy (``data_dir`` = subset)."""
    pairs = []
    for subset in SUBSETS:
        rows = hub_rows(dataset_id, f"{FOLDER}/", data_dir=subset, split="test")
        pairs += [parse_row(r, f"hub:{dataset_id}/{subset}:{i}", subset)
                  for i, r in enumerate(rows, 1)]
    return pairs


def split_dialogue(chosen: str, rejected: str) -> tuple[str, str, str]:
    """The shared dialogue and the two final replies of one row.

    The cut is the last ``\\n\\nAssistant:`` inside the text both transcripts share, so a
    reply that itself runs over several turns (a few rows miss the blank line before
    ``Human:``) stays whole.

    Returns:
        ``(dialogue, chosen reply, rejected reply)``, the replies stripped.
    """
    if MARKER not in chosen:
        raise DataError("field 'chosen' has no '\\n\\nAssistant:' turn")
    shared = os.path.commonprefix([chosen, rejected])
    cut = shared.rfind(MARKER)
    if cut < 0:
        raise DataError("fields 'chosen' and 'rejected' share no '\\n\\nAssistant:' turn")
    return chosen[:cut], chosen[cut + len(MARKER):].strip(), rejected[cut + len(MARKER):].strip()


def chosen_second(key: str, seed: int = ORDER_SEED) -> bool:
    """The seeded coin: whether the chosen reply of the row with this key is shown second."""
    return int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:8], 16) % 2 == 1


def parse_row(row: dict, source: str, subset: str = "") -> Pair:
    """Turn one HH-RLHF ``chosen``/``rejected`` row into a :class:`Pair`.

    The shared dialogue becomes ``text`` (stripped; its turns read ``Human: ...`` /
    ``Assistant: ...``); the two final replies become the responses, in the seeded order of
    :func:`chosen_second`. The post id is a hash of the dialogue, so one dialogue never lands
    in two splits.
    """
    chosen, rejected = field(row, "chosen"), field(row, "rejected")
    if not isinstance(chosen, str) or not isinstance(rejected, str):
        raise DataError("fields 'chosen' and 'rejected' must be strings")
    prompt, good, bad = split_dialogue(chosen, rejected)
    key = content_key(prompt.strip(), good, bad)
    flip = chosen_second(key)
    return Pair(
        key=key,
        post_id="hh" + hashlib.sha1(prompt.encode()).hexdigest()[:12],
        text=prompt.strip(),
        title="",
        subreddit="",
        first=bad if flip else good,
        second=good if flip else bad,
        human=0.0 if flip else 1.0,
        confidence=None,
        worker="",
        task=TASK,
        source=source,
        subset=subset,
    )
