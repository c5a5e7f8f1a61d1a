"""OpenAI TL;DR comparisons (Stiennon et al. 2020), the lab's default dataset.

JSON-lines rows with ``info`` (post, title, subreddit, id), two ``summaries``, the human's
``choice`` (0/1), the 9-point ``extra.confidence`` and a ``worker`` id; also the CNN/DM rows
of the same release (``info.article``). Reads a file, a folder of such files, or the hub id
``openai/summarize_from_feedback`` (config ``comparisons``, validation split).

Reference summaries: some batches of the release compare a policy's summary with the human
reference summary of the post (``policy`` ``ref``; the CNN/DM batch 0 does, batch 13 does
not). :func:`references` collects them and :func:`with_references` attaches them to pairs, only
for a judge that shows a reference (``run.prepare``), never at load: ``Pair.reference`` enters
a pair's identity when set, so attaching it at load would change the identity of every
existing run on such data.
"""

from __future__ import annotations

from pathlib import Path

from lab.datasets.rows import (
    choice_field,
    field,
    first_row,
    hub_rows,
    raw_rows,
    read_files,
    with_reference,
)
from lab.errors import DataError
from lab.pair import Pair, content_key, post_key

NAME = "tldr"
TASK = "summarize"
FOLDER = "summarize_from_feedback_comparisons"
HUB_ID = "openai/summarize_from_feedback"
PATTERNS = ("*.json", "*.jsonl", "*.jsonl.gz")
REF_POLICY = "ref"
"""The ``policy`` of the human-written reference summary of a post."""


def files(folder: Path, include_edits: bool = False) -> list[Path]:
    """The comparison files of a folder: every ``*.json``, ``*.jsonl``, ``*.jsonl.gz`` but
    CNN/DM files and, unless ``include_edits``, the ``edit_*`` files."""
    return sorted(
        f
        for pattern in PATTERNS
        for f in folder.glob(pattern)
        if "cnndm" not in f.name and (include_edits or not f.name.startswith("edit_"))
    )


def _is_tldr(file: Path) -> bool:
    row = first_row(file)
    return row is not None and "summaries" in row and "info" in row


def detect(path: Path) -> bool:
    """A file whose first row has ``info`` and ``summaries``; a folder holding one (or the
    ``summarize_from_feedback_comparisons`` folder)."""
    if path.is_file():
        return _is_tldr(path)
    return path.name == FOLDER or any(_is_tldr(f) for f in files(path)[:3])


def load(path: Path, skip_bad_rows: bool = False,
         include_edits: bool = False) -> tuple[list[Pair], int]:
    """Load TL;DR comparisons from a file or a folder.

    Args:
        path: a comparisons file, or a folder of them.
        skip_bad_rows: skip malformed rows and count them instead of stopping.
        include_edits: also read a folder's ``edit_*`` files (human-edited summaries).

    Returns:
        The pairs and the number of rows skipped.
    """
    found = [path] if path.is_file() else files(path, include_edits)
    if not found:
        raise DataError(f"{path}: no *.json/*.jsonl files; pass --data with a comparisons file")
    return read_files(found, parse_row, skip_bad_rows)


def references(path: Path, include_edits: bool = False) -> dict[str, str]:
    """The human reference summaries (``policy`` ``ref``) of the posts at ``path``, by
    :func:`lab.pair.post_key` of the post's text (so a row without a post id still finds its
    post); the first one in file order where a post has several. Reads the files :func:`load`
    reads; rows it cannot read are passed over (:func:`load` reports or counts them)."""
    found = [path] if path.is_file() else files(path, include_edits)
    refs: dict[str, str] = {}
    for file in found:
        for row in raw_rows(file):
            info, summaries = row.get("info"), row.get("summaries")
            if not isinstance(info, dict) or not isinstance(summaries, list):
                continue
            text = info.get("post") if info.get("post") is not None else info.get("article")
            if not isinstance(text, str):
                continue
            for s in summaries:
                if isinstance(s, dict) and s.get("policy") == REF_POLICY \
                        and isinstance(s.get("text"), str) and s["text"].strip():
                    refs.setdefault(post_key(text.strip()), s["text"].strip())
    return refs


def with_references(pairs: list[Pair], path: Path, include_edits: bool = False) -> list[Pair]:
    """The pairs, each with its post's reference summary (:func:`references`) as
    ``reference``, except where one of its two summaries *is* the reference summary (a
    comparison with ``ref`` itself, which the reference would give away): those, and pairs of
    posts without one, keep ``reference`` None.

    Only for a judge that shows a reference: see the module docstring for why loading never
    attaches them.
    """
    refs = references(path, include_edits)
    return [with_reference(p, refs.get(post_key(p.text))) for p in pairs]


def load_hub(dataset_id: str) -> list[Pair]:
    """The validation comparisons of a hub copy (config ``comparisons``)."""
    rows = hub_rows(dataset_id, f"{FOLDER}/", name="comparisons", split="validation")
    return [parse_row(row, f"hub:{i}") for i, row in enumerate(rows)]


def parse_row(row: dict, source: str) -> Pair:
    """Turn one OpenAI comparison row into a :class:`Pair` (raises DataError if malformed).

    ``source`` (``file:line``) is kept for messages; the pair's key is a hash of its content.
    """
    info = field(row, "info")
    text = info.get("post") if isinstance(info, dict) else None
    if text is None and isinstance(info, dict):
        text = info.get("article")  # CNN/DM rows
    if not isinstance(text, str):
        raise DataError("missing field 'info.post'")
    summaries = field(row, "summaries")
    if not isinstance(summaries, list) or len(summaries) != 2:
        n = len(summaries) if isinstance(summaries, list) else "no list of"
        raise DataError(f"field 'summaries' must hold exactly two summaries, found {n}")
    texts = []
    for i, s in enumerate(summaries):
        if not isinstance(s, dict) or not isinstance(s.get("text"), str):
            raise DataError(f"missing field 'summaries[{i}].text'")
        if not s["text"].strip():
            raise DataError(f"field 'summaries[{i}].text' is empty")
        texts.append(s["text"].strip())
    choice = choice_field(row, "choice", (0, 1))
    confidence = field(row, "extra.confidence")
    if confidence not in range(1, 10) or isinstance(confidence, bool):
        raise DataError(f"field 'extra.confidence' must be 1..9, found {confidence!r}")
    title = info.get("title") or ""
    post_id = info.get("id") or "h" + post_key(text)
    human = 1.0 if choice == 0 else 0.0
    worker = str(field(row, "worker"))
    return Pair(
        key=content_key(title.strip(), text.strip(), *texts, human, int(confidence), worker),
        post_id=str(post_id),
        text=text.strip(),
        title=title.strip(),
        subreddit=str(info.get("subreddit") or info.get("site") or "").removeprefix("r/"),
        first=texts[0],
        second=texts[1],
        human=human,
        confidence=int(confidence),
        worker=worker,
        task=TASK,
        source=source,
    )
