"""Stage 4 (reuse): a content-addressed cache of per-pair labels.

The key is a hash of everything that determines a pair's label: the backend identity (model
name and weights hash), the engine and its dtype, the rendered prompts of both orders, and the
decoding settings when a rationale is decoded. A repeated or overlapping setting (a sweep trial
run again, the same no-CoT pass wanted by two experiments, a pair judged by several workers)
therefore costs a lookup. Values keep the cost of the original computation, so a setting's cost
does not drop to zero because it was computed before. Stored in SQLite (one file, safe to
interrupt).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path


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
        # several processes may share the file: wait for a writer rather than fail
        self._db = sqlite3.connect(str(self.path) if self.path else ":memory:", timeout=60)
        self._db.execute("CREATE TABLE IF NOT EXISTS labels (key TEXT PRIMARY KEY, value TEXT)")
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> dict | None:
        row = self._db.execute("SELECT value FROM labels WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(row[0])

    def put(self, key: str, value: dict) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO labels (key, value) VALUES (?, ?)", (key, json.dumps(value))
        )
        self._db.commit()
