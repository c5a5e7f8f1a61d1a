"""Stage 4 (reuse): a content-addressed cache of per-pair labels.

The key is a hash of everything that determines a pair's label: the backend identity (model
name and weights hash), the engine and its dtype, the rendered prompts of both orders, and the
decoding settings when a rationale is decoded. A repeated or overlapping setting (a sweep trial
run again, the same no-CoT pass wanted by two experiments, a pair judged by several workers)
therefore costs a lookup. Values keep the cost of the original computation, so a setting's cost
does not drop to zero because it was computed before. Stored in SQLite (one file, safe to
interrupt), or in any database SQLAlchemy reaches, given as a URL (e.g. the PostgreSQL database
of a distributed sweep, so that workers on several machines share their labels): table
``rlaif_label_cache``, one row per key.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

from lab.errors import RunError


def cache_key(*parts) -> str:
    """sha256 of the JSON encoding of the parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def is_url(location) -> bool:
    """Whether a cache location is a database URL (``postgresql://...``) rather than a path."""
    return isinstance(location, str) and "://" in location


class LabelCache:
    """A key -> JSON value store, in memory, in a SQLite file or in a database (URL)."""

    def __init__(self, path: str | Path | None = None) -> None:
        """Open (creating) the cache: ``None`` keeps it in memory, a path is a SQLite file, a
        URL (``postgresql://user@host/db``, ``sqlite:///file``) a table in that database."""
        self.hits = 0
        self.misses = 0
        self._table = _SQLTable(path) if is_url(path) else None
        if self._table is not None:
            self.path = None
            return
        self.path = Path(path) if path else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # several processes may share the file: wait for a writer rather than fail
        self._db = sqlite3.connect(str(self.path) if self.path else ":memory:", timeout=60)
        self._db.execute("CREATE TABLE IF NOT EXISTS labels (key TEXT PRIMARY KEY, value TEXT)")

    def get(self, key: str) -> dict | None:
        if self._table is not None:
            text = self._table.get(key)
            row = None if text is None else (text,)
        else:
            row = self._db.execute("SELECT value FROM labels WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(row[0])

    def put(self, key: str, value: dict) -> None:
        if self._table is not None:
            self._table.put(key, json.dumps(value))
            return
        self._db.execute(
            "INSERT OR REPLACE INTO labels (key, value) VALUES (?, ?)", (key, json.dumps(value))
        )
        self._db.commit()


class _SQLTable:
    """The cache's storage in a database reached through SQLAlchemy (one table, key -> JSON)."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self._sa = sa
        try:
            self.engine = sa.create_engine(url, pool_pre_ping=True)
        except (sa.exc.ArgumentError, ImportError) as err:
            raise RunError(
                f"label cache {url!r}: {err}; give a path or a database URL such as "
                "postgresql://user@host/db (pip install 'rlaif-lab[postgres]')") from None
        self.shown = self.engine.url.render_as_string(hide_password=True)
        meta = sa.MetaData()
        self.table = sa.Table("rlaif_label_cache", meta,
                              sa.Column("key", sa.String(64), primary_key=True),
                              sa.Column("value", sa.Text, nullable=False))
        for attempt in range(5):  # workers starting together race to create the table
            try:
                meta.create_all(self.engine)
                break
            except (sa.exc.IntegrityError, sa.exc.ProgrammingError):
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
            except sa.exc.OperationalError as err:
                raise RunError(f"label cache {self.shown}: {str(err).splitlines()[0]}; check the "
                               "URL and that the server runs, or use --no-cache") from None

    def get(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(self._sa.select(self.table.c.value)
                                .where(self.table.c.key == key)).scalar()

    def put(self, key: str, text: str) -> None:
        """Insert or replace (the same key from two workers holds the same label)."""
        dialect = self.engine.dialect.name
        if dialect in ("postgresql", "sqlite"):
            if dialect == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert
            stmt = insert(self.table).values(key=key, value=text)
            stmt = stmt.on_conflict_do_update(index_elements=["key"],
                                              set_={"value": stmt.excluded.value})
        elif dialect in ("mysql", "mariadb"):
            from sqlalchemy.dialects.mysql import insert

            stmt = insert(self.table).values(key=key, value=text)
            stmt = stmt.on_duplicate_key_update(value=stmt.inserted.value)
        else:
            raise RunError(f"label cache {self.shown}: use sqlite, postgresql or mysql")
        with self.engine.begin() as conn:
            conn.execute(stmt)
