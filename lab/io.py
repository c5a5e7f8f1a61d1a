"""Files the lab writes: atomic writes, JSON-lines records, and one writer per folder.

Low in the stack (it imports only :mod:`lab.errors`), so every stage shares one way of writing:

* :func:`write_json_atomic` / :func:`write_text_atomic` / :func:`write_csv_atomic`: a temp
  file beside the target, then a rename, so a reader never sees half a file;
* :func:`read_jsonl`: the records of a JSON-lines file the lab appends to. Only a torn *last*
  line (no newline: a kill mid-write) is cut; any other line that does not parse is an error
  naming ``file:line``, and nothing is deleted;
* :func:`claim`: an exclusive lock on a folder (``fcntl.flock`` on ``FOLDER/.lock``), so two
  processes never write one run or sweep folder at once. The kernel releases it when the
  process ends, even by SIGKILL, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from lab.errors import RunError

LOCK_NAME = ".lock"


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def write_text_atomic(path: Path, text: str) -> None:
    """Write text to a temp file beside ``path`` and rename it into place."""
    tmp = _tmp(path)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json_atomic(path: Path, obj) -> None:
    """Write JSON to a temp file beside ``path`` and rename it into place."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_csv_atomic(path: Path, rows: list[dict], fields: list[str]) -> None:
    """Write rows as CSV to a temp file beside ``path`` and rename it into place."""
    tmp = _tmp(path)
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def read_jsonl(path: Path, cut_torn_tail: bool = False) -> list[dict]:
    """The records of a JSON-lines file the lab appends to (``[]`` if there is none).

    Args:
        path: the file.
        cut_torn_tail: cut a last line without a newline (left by a kill mid-write) off the
            file; only the folder's writer (the holder of :func:`claim`) may pass True.

    Raises:
        RunError: a line other than a torn last one is not a JSON object (``file:line``).
    """
    if not path.is_file():
        return []
    records, good_bytes = [], 0
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.endswith(b"\n"):  # torn by a kill: the record was never complete
                break
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                what = err.msg if isinstance(err, json.JSONDecodeError) else "not UTF-8"
                raise RunError(
                    f"{path}:{lineno}: not a record the lab wrote ({what}); the lab never "
                    "writes such a line: restore that line or move the file away, then rerun"
                ) from None
            if not isinstance(record, dict):
                raise RunError(f"{path}:{lineno}: not a JSON object; restore that line or "
                               "move the file away, then rerun")
            records.append(record)
            good_bytes += len(raw)
    if cut_torn_tail and good_bytes < path.stat().st_size:
        with open(path, "r+b") as fh:
            fh.truncate(good_bytes)
    return records


def append_jsonl(fh, record: dict) -> None:
    """Append one record as a line and flush it (an open text file in append mode)."""
    fh.write(json.dumps(record) + "\n")
    fh.flush()


def ensure_folder(folder: Path) -> None:
    """Create ``folder`` (and parents); a file in its place or no permission is a RunError."""
    if folder.exists() and not folder.is_dir():
        raise RunError(f"{folder} is a file, not a folder; pass a folder path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise RunError(f"{folder}: a parent is a file, not a folder; pass a folder path") from None
    except PermissionError:
        raise RunError(f"{folder}: permission denied; pass a folder you can write to") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RunError(f"{folder} is read-only; pass a folder you can write to")


@contextlib.contextmanager
def claim(folder: str | Path, what: str = "run") -> Iterator[Path]:
    """Hold the folder's exclusive lock for the duration of the block.

    Creates the folder if needed. A second process that asks for the same folder gets a
    :class:`RunError` at once (it does not wait) naming the holder's pid.

    Args:
        folder: the run or sweep folder.
        what: what the folder is, for the message (``run``, ``sweep``).

    Yields:
        The folder as a Path.
    """
    folder = Path(folder)
    ensure_folder(folder)
    lock = folder / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:
        raise RunError(f"{folder} is read-only; pass a folder you can write to") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise RunError(
                f"{folder} is in use by another {what} (pid {holder}); wait for it to finish "
                "or pass another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield folder
    finally:
        os.close(fd)  # closing the descriptor releases the lock
