"""Reading rows for the dataset loaders: JSON lines (plain or gzip) and JSON arrays.

One bad row is a one-line :class:`DataError` naming where it is (``file:line`` for JSON
lines, ``file[index]`` for JSON arrays) and the fix, or, with ``skip_bad_rows``, a counted
skip. Also the small field checks the loaders share, content sniffing for ``detect`` and
the hub fallback through the ``[hub]`` extra.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from collections.abc import Callable, Iterator
from pathlib import Path

from lab.errors import DataError
from lab.pair import Pair

ENV_VAR = "RLAIF_DATA_DIR"
FIX = "fix the row or pass --skip-bad-rows"

Parse = Callable[[dict, str], Pair]
"""A loader's row parser: ``parse(row, where) -> Pair``; raises DataError if malformed."""


def _open(file: Path):
    return gzip.open(file, "rb") if file.suffix == ".gz" else open(file, "rb")


def _is_array(file: Path) -> bool:
    """Whether the file is one JSON array (first non-blank byte ``[``), not JSON lines."""
    with _open(file) as fh:
        while chunk := fh.read(4096):
            stripped = chunk.lstrip()
            if stripped:
                return stripped[:1] == b"["
    return False


def read_rows(file: Path, parse: Parse, skip_bad_rows: bool = False) -> tuple[list[Pair], int]:
    """Read every row of a JSON-lines or JSON-array file through ``parse``.

    Args:
        file: the file (``.gz`` is decompressed).
        parse: the loader's row parser.
        skip_bad_rows: skip malformed rows and count them instead of stopping.

    Returns:
        The pairs and the number of rows skipped.

    Raises:
        DataError: a row is malformed (unless skipped), or a JSON-array file is not valid JSON.
    """
    if _is_array(file):
        return _read_array(file, parse, skip_bad_rows)
    pairs, skipped = [], 0
    with _open(file) as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            where = f"{file}:{lineno}"
            try:
                pairs.append(parse(as_object(json_value(decode(raw))), where))
            except DataError as err:
                if not skip_bad_rows:
                    raise DataError(f"{where}: {err} ({FIX})") from None
                skipped += 1
    return pairs, skipped


def read_files(files: list[Path], parse: Parse,
               skip_bad_rows: bool = False) -> tuple[list[Pair], int]:
    """:func:`read_rows` over several files: all their pairs and the rows skipped in all."""
    pairs, skipped = [], 0
    for file in files:
        got, bad = read_rows(file, parse, skip_bad_rows)
        pairs.extend(got)
        skipped += bad
    return pairs, skipped


def raw_rows(file: Path) -> Iterator[dict]:
    """The JSON-object rows of a JSON-lines or JSON-array file, leniently: rows that cannot
    be read are passed over. For side data read beside pairs that were already loaded (and
    whose bad rows were reported or counted then), such as reference answers."""
    try:
        if _is_array(file):
            with _open(file) as fh:
                rows = json.loads(fh.read())
            yield from (r for r in (rows if isinstance(rows, list) else []) if isinstance(r, dict))
            return
        with _open(file) as fh:
            lines = fh.readlines()
    except (OSError, ValueError, EOFError):
        return
    for raw in lines:
        try:
            row = json.loads(raw)
        except ValueError:
            continue
        if isinstance(row, dict):
            yield row


def with_reference(pair: Pair, reference: str | None) -> Pair:
    """The pair with this reference answer, unless it has none (None or blank) or one of the
    pair's own responses is that text (stripped): a reference equal to a response would give
    the comparison away, so that pair keeps ``reference`` None."""
    if reference is None or not reference.strip():
        return pair
    ref = reference.strip()
    if ref in (pair.first.strip(), pair.second.strip()):
        return pair
    return dataclasses.replace(pair, reference=ref)


def instruction_pair(key: str, post_id: str, text: str, first: str, second: str,
                     human: float, task: str, source: str, subset: str,
                     votes: tuple[float, ...] = (), worker: str = "") -> Pair:
    """A :class:`Pair` of an instruction dataset (no title, subreddit, confidence; a worker
    only where the data names its annotator)."""
    return Pair(key=key, post_id=post_id, text=text, title="", subreddit="", first=first,
                second=second, human=human, confidence=None, worker=worker, task=task,
                source=source, subset=subset, votes=votes)


def _read_array(file: Path, parse: Parse, skip_bad_rows: bool) -> tuple[list[Pair], int]:
    with _open(file) as fh:
        raw = fh.read()
    try:
        rows = json.loads(decode(raw))
    except DataError as err:
        raise DataError(f"{file}: {err}") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{file}: bad JSON ({err.msg} at line {err.lineno} column {err.colno}); "
                        "fix the file (a JSON array of rows, or one JSON object per line)"
                        ) from None
    pairs, skipped = [], 0
    for i, row in enumerate(rows):
        where = f"{file}[{i}]"
        try:
            pairs.append(parse(as_object(row), where))
        except DataError as err:
            if not skip_bad_rows:
                raise DataError(f"{where}: {err} ({FIX})") from None
            skipped += 1
    return pairs, skipped


def decode(raw: bytes) -> str:
    """UTF-8 text of a line (or file); DataError naming the bad byte otherwise."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"not UTF-8 (byte 0x{raw[err.start]:02x} at byte {err.start + 1} of the line); "
            "save the file as UTF-8"
        ) from None


def json_value(line: str):
    """One JSON value; DataError with the parser's message and column otherwise."""
    try:
        return json.loads(line.rstrip("\r\n"))  # a truncated row: its column, not line 2's
    except json.JSONDecodeError as err:
        raise DataError(f"bad JSON ({err.msg} at column {err.colno})") from None


def as_object(row) -> dict:
    """The row if it is a JSON object; DataError otherwise."""
    if not isinstance(row, dict):
        raise DataError("row is not a JSON object")
    return row


def first_row(file: Path) -> dict | None:
    """The first row of a file (JSON lines or JSON array), None if it cannot be read as one.

    For ``detect``: recognising a dataset by its field names.
    """
    try:
        if _is_array(file):
            with _open(file) as fh:
                rows = json.loads(fh.read())
            row = rows[0] if isinstance(rows, list) and rows else None
        else:
            row = None
            with _open(file) as fh:
                for raw in fh:
                    if raw.strip():
                        row = json.loads(raw)
                        break
    except (OSError, ValueError, EOFError):
        return None
    return row if isinstance(row, dict) else None


def has_fields(file: Path, *names: str) -> bool:
    """Whether the file's first row has every one of these fields."""
    row = first_row(file)
    return row is not None and all(n in row for n in names)


def field(row: dict, dotted: str):
    """The value at a dotted path (``extra.confidence``); DataError if absent or null."""
    value = row
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value or value[part] is None:
            raise DataError(f"missing field '{dotted}'")
        value = value[part]
    return value


def text_field(row: dict, name: str) -> str:
    """A string field (may be empty); DataError if absent or not a string."""
    value = field(row, name)
    if not isinstance(value, str):
        raise DataError(f"field '{name}' must be a string, found {type(value).__name__}")
    return value


def choice_field(row: dict, name: str, allowed: tuple[int, ...]) -> int:
    """An integer field with one of the allowed values; DataError otherwise."""
    value = field(row, name)
    if isinstance(value, bool) or value not in allowed:
        shown = ", ".join(map(str, allowed[:-1])) + f" or {allowed[-1]}"
        raise DataError(f"field '{name}' must be {shown}, found {value!r}")
    return int(value)


def hub_rows(dataset_id: str, what: str, **kwargs) -> list[dict]:
    """Rows of a hub dataset through the ``[hub]`` extra (``datasets.load_dataset``).

    Args:
        dataset_id: the hub id, e.g. ``Anthropic/hh-rlhf``.
        what: the local copy to name in messages (e.g. ``hh_rlhf_test/``).
        kwargs: passed to ``load_dataset`` (config name, ``data_dir``, ``split``).

    Raises:
        DataError: ``datasets`` is not installed, or the dataset cannot be loaded (offline).
    """
    try:
        import datasets
    except ImportError:
        raise DataError(
            "loading from the hub needs `datasets`: pip install 'rlaif-lab[hub]', "
            f"or pass --data PATH / set {ENV_VAR} to a local copy ({what})"
        ) from None
    try:
        ds = datasets.load_dataset(dataset_id, **kwargs)
    except Exception as err:  # network, auth, missing id: all end the same way
        raise DataError(
            f"hub:{dataset_id}: could not load ({type(err).__name__}); offline machines "
            f"must pass --data PATH or set {ENV_VAR}"
        ) from None
    return [dict(row) for row in ds]


def files_in(folder: Path, patterns: tuple[str, ...]) -> list[Path]:
    """Files in a folder matching any of the glob patterns, sorted, each once."""
    return sorted({f for pattern in patterns for f in folder.glob(pattern) if f.is_file()})
