"""Stage 4 (reuse): a content-addressed cache of per-pair labels.

The key is a hash of everything that determines a pair's label: the backend identity (model
name and weights hash), the engine and its dtype, the rendered prompts of both orders, and the
decoding settings when a rationale is decoded. A repeated or overlapping setting (a sweep trial
run again, the same no-CoT pass wanted by two experiments, a pair judged by several workers)
therefore costs a lookup. Values keep the cost of the original computation, so a setting's cost
does not drop to zero because it was computed before. Stored in SQLite (one file, safe to
interrupt).

Each value is stored with the sha256 of its text; a value whose checksum does not match (an
edited or damaged entry) is an error naming the key, never a label. The checksum catches
edits and damage, not a deliberate forger who recomputes it. ``rlaif cache info | verify |
clear`` inspects, checks and empties the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from pathlib import Path

from lab.errors import RunError

FIX = "run `rlaif cache verify` to list bad entries and `rlaif cache clear` to empty the " \
      "cache, or pass --no-cache"


def cache_key(*parts) -> str:
    """sha256 of the JSON encoding of the parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


class LabelCache:
    """A key -> JSON value store, in memory or in a SQLite file."""

    def __init__(self, path: str | Path | None = None) -> None:
        """Open (creating) the cache; ``path=None`` keeps it in memory."""
        self.path = Path(path) if path else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.name = f"label cache {self.path}" if self.path else "label cache (in memory)"
        with self._guard():
            # several processes may share the file: wait for a writer rather than fail
            self._db = sqlite3.connect(str(self.path) if self.path else ":memory:", timeout=60)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS labels (key TEXT PRIMARY KEY, value TEXT)")
            columns = [r[1] for r in self._db.execute("PRAGMA table_info(labels)")]
            if "checksum" not in columns:  # a cache written before checksums
                self._db.execute("ALTER TABLE labels ADD COLUMN checksum TEXT")
                self._db.commit()
        self.hits = 0
        self.misses = 0

    @contextlib.contextmanager
    def _guard(self):
        """Turn SQLite's 'file is not a database' (a damaged cache file) into a RunError."""
        try:
            yield
        except sqlite3.DatabaseError as err:
            damaged = ("not a database", "malformed", "file is encrypted")
            if not any(d in str(err) for d in damaged):
                raise
            raise RunError(f"{self.name} is damaged ({err}); pass --no-cache, or run "
                           "`rlaif cache clear` to start a new one") from None

    def get(self, key: str) -> dict | None:
        """The value stored under ``key`` (None if absent); a damaged entry is a RunError."""
        with self._guard():
            row = self._db.execute("SELECT value, checksum FROM labels WHERE key = ?",
                                   (key,)).fetchone()
        if row is None or row[1] is None:  # absent, or unchecked (older lab): compute it anew
            self.misses += 1
            return None
        self.hits += 1
        return self._decode(key, *row)

    def _decode(self, key: str, text: str, checksum: str) -> dict:
        if checksum != _sha256(text):
            raise RunError(f"{self.name}: entry {key} does not match its checksum (edited or "
                           f"damaged); {FIX}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            raise RunError(f"{self.name}: entry {key} is not a JSON object; {FIX}")
        return value

    def put(self, key: str, value: dict) -> None:
        """Store a value (and its checksum) under ``key``."""
        text = json.dumps(value)
        with self._guard():
            self._db.execute(
                "INSERT OR REPLACE INTO labels (key, value, checksum) VALUES (?, ?, ?)",
                (key, text, _sha256(text)),
            )
            self._db.commit()

    def count(self) -> int:
        """Entries in the cache."""
        with self._guard():
            return self._db.execute("SELECT COUNT(*) FROM labels").fetchone()[0]

    def entries(self):
        """Every (key, value) pair; the value is a RunError for an entry that fails its
        checksum and None for an unchecked one (written before checksums: computed anew)."""
        with self._guard():
            rows = self._db.execute("SELECT key, value, checksum FROM labels ORDER BY key")
            for key, text, checksum in rows.fetchall():
                if checksum is None:
                    yield key, None
                    continue
                try:
                    yield key, self._decode(key, text, checksum)
                except RunError as err:
                    yield key, err

    def close(self) -> None:
        """Close the connection."""
        self._db.close()


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def is_label_cache(path: str | Path) -> bool:
    """Whether ``path`` is a SQLite file with the lab's ``labels`` table."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            columns = [r[1] for r in db.execute("PRAGMA table_info(labels)")]
        finally:
            db.close()
    except sqlite3.DatabaseError:
        return False
    return columns[:2] == ["key", "value"]


def clear(path: str | Path) -> bool:
    """Delete the cache file at ``path`` (and SQLite's side files); False if there was none."""
    path = Path(path)
    existed = path.exists()
    for p in (path, path.with_name(path.name + "-journal"), path.with_name(path.name + "-wal"),
              path.with_name(path.name + "-shm")):
        p.unlink(missing_ok=True)
    return existed
