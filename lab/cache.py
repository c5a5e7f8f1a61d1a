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
import time
from pathlib import Path

from lab.errors import RunError

FIX = "run `rlaif cache verify` to list bad entries and `rlaif cache clear` to empty the " \
      "cache, or pass --no-cache"


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
            self.name = f"label cache {self._table.shown}"
            return
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
        if self._table is not None:
            row = self._table.get(key)
        else:
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
        if self._table is not None:
            self._table.put(key, text, _sha256(text))
            return
        with self._guard():
            self._db.execute(
                "INSERT OR REPLACE INTO labels (key, value, checksum) VALUES (?, ?, ?)",
                (key, text, _sha256(text)),
            )
            self._db.commit()

    def count(self) -> int:
        """Entries in the cache."""
        if self._table is not None:
            return self._table.count()
        with self._guard():
            return self._db.execute("SELECT COUNT(*) FROM labels").fetchone()[0]

    def entries(self):
        """Every (key, value) pair; the value is a RunError for an entry that fails its
        checksum and None for an unchecked one (written before checksums: computed anew)."""
        if self._table is not None:
            rows = self._table.rows()
        else:
            with self._guard():
                rows = self._db.execute(
                    "SELECT key, value, checksum FROM labels ORDER BY key").fetchall()
        for key, text, checksum in rows:
            if checksum is None:
                yield key, None
                continue
            try:
                yield key, self._decode(key, text, checksum)
            except RunError as err:
                yield key, err

    def close(self) -> None:
        """Close the connection."""
        if self._table is not None:
            self._table.engine.dispose()
        else:
            self._db.close()


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
                              sa.Column("value", sa.Text, nullable=False),
                              sa.Column("checksum", sa.String(64), nullable=False))
        for attempt in range(5):  # workers starting together race to create the table
            try:
                meta.create_all(self.engine)
                break
            except (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError) as err:
                # another worker created the table between the check and the CREATE (PostgreSQL
                # says so with an IntegrityError/ProgrammingError, SQLite with an
                # OperationalError "already exists"): look again
                lost_race = not isinstance(err, sa.exc.OperationalError) \
                    or "already exists" in str(err)
                if lost_race and attempt < 4:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                if not isinstance(err, sa.exc.OperationalError):
                    raise
                raise RunError(f"label cache {self.shown}: {str(err).splitlines()[0]}; check the "
                               "URL and that the server runs, or use --no-cache") from None

    def get(self, key: str) -> tuple[str, str] | None:
        """(value, checksum) under ``key``, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(self._sa.select(self.table.c.value, self.table.c.checksum)
                               .where(self.table.c.key == key)).first()
        return None if row is None else (row[0], row[1])

    def rows(self) -> list[tuple[str, str, str]]:
        """Every (key, value, checksum), by key."""
        t = self.table
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(
                self._sa.select(t.c.key, t.c.value, t.c.checksum).order_by(t.c.key))]

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(self._sa.select(self._sa.func.count())
                                .select_from(self.table)).scalar()

    def put(self, key: str, text: str, checksum: str) -> None:
        """Insert or replace (the same key from two workers holds the same label)."""
        dialect = self.engine.dialect.name
        if dialect in ("postgresql", "sqlite"):
            if dialect == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert
            stmt = insert(self.table).values(key=key, value=text, checksum=checksum)
            stmt = stmt.on_conflict_do_update(
                index_elements=["key"],
                set_={"value": stmt.excluded.value, "checksum": stmt.excluded.checksum})
        elif dialect in ("mysql", "mariadb"):
            from sqlalchemy.dialects.mysql import insert

            stmt = insert(self.table).values(key=key, value=text, checksum=checksum)
            stmt = stmt.on_duplicate_key_update(value=stmt.inserted.value,
                                                checksum=stmt.inserted.checksum)
        else:
            raise RunError(f"label cache {self.shown}: use sqlite, postgresql or mysql")
        with self.engine.begin() as conn:
            conn.execute(stmt)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _read_only(path: str | Path, sql: str) -> list[tuple] | None:
    """The rows of one query on a SQLite file opened read-only; None if it is not one."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError:
        return None


def is_label_cache(path: str | Path) -> bool:
    """Whether ``path`` is a SQLite file with the lab's ``labels`` table."""
    columns = _read_only(path, "PRAGMA table_info(labels)")
    return columns is not None and [r[1] for r in columns][:2] == ["key", "value"]


def is_other_database(path: str | Path) -> bool:
    """Whether ``path`` is a readable SQLite database that is not a label cache (e.g. a
    sweep's study.db); a damaged file is not (opening it says so)."""
    tables = _read_only(path, "SELECT name FROM sqlite_master WHERE type='table'")
    return bool(tables) and "labels" not in [r[0] for r in tables]


def clear(path: str | Path) -> bool:
    """Delete the cache file at ``path`` (and SQLite's side files); False if there was none."""
    path = Path(path)
    existed = path.exists()
    for p in (path, path.with_name(path.name + "-journal"), path.with_name(path.name + "-wal"),
              path.with_name(path.name + "-shm")):
        p.unlink(missing_ok=True)
    return existed
