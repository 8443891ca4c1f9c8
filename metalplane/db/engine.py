"""Database engine, sessions and schema migration.

:class:`Database` wraps two SQLAlchemy engines on the same URL: one for reads and one for
writes. On SQLite (WAL mode) the write engine opens every transaction with ``BEGIN
IMMEDIATE`` so concurrent writers queue instead of failing with ``SQLITE_BUSY`` when a read
transaction is upgraded, and the threads of one process take turns on a lock before they
begin: SQLite's own busy handler sleeps up to 100 ms between tries, so under many writer
threads it, not the work, set the pace (a profile of bench/lifecycle.py at 1000 nodes had
two fifths of the conductor's samples waiting in it). Other processes still queue on
``busy_timeout``. On PostgreSQL both engines are one and there is no lock.

:meth:`Database.execute` runs one Core statement as its own transaction, for the hot path
(a node's lock, state changes, reads by the API): on SQLite without ``BEGIN``/``COMMIT``
(one statement is atomic in autocommit mode) and without a session, about a fifth of the
CPU of the same statement through the ORM.

The schema is managed by Alembic (``metalplane/db/migrations``); :meth:`Database.upgrade`
brings it to head.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.orm import Session, sessionmaker

from metalplane.common.files import private_file

__all__ = ["Database"]

_MIGRATIONS = Path(__file__).parent / "migrations"


def json_loads(text: str | bytes) -> Any:
    """A JSON column's value: parsed by orjson (a quarter of the stdlib's time; a list of
    10,000 objects reads five JSON columns each), by the stdlib where orjson refuses what
    the stdlib wrote (NaN, integers beyond 64 bits). Raises ``ValueError`` for bad JSON."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _sqlite_engine(url: str, begin: str | None) -> sa.Engine:
    engine = sa.create_engine(
        url,
        json_deserializer=json_loads,
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=20,
        max_overflow=40,
        pool_timeout=60,
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from pysqlite so BEGIN is ours (SQLAlchemy's recipe).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    if begin is not None:
        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql(begin)

    return engine


class Database:
    """Engines and session factories for one database URL.

    ``url`` is any SQLAlchemy URL; ``sqlite:///path`` gets WAL mode, its parent directory
    created and the file made mode 0600 (tightened if it was looser).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = sa.engine.make_url(url).database
            if path and path != ":memory:":
                # 0600 before SQLite opens it: its -wal and -shm files take the same mode
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                for name in (path, f"{path}-wal", f"{path}-shm"):
                    if name == path or Path(name).exists():
                        private_file(Path(name))
            self.engine = _sqlite_engine(url, "BEGIN")
            self.write_engine = _sqlite_engine(url, "BEGIN IMMEDIATE")
            self._single = _sqlite_engine(url, None)
        else:
            self.engine = sa.create_engine(url, pool_size=20, max_overflow=40, pool_pre_ping=True,
                                           json_deserializer=json_loads)
            self.write_engine = self._single = self.engine
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.write_engine, expire_on_commit=False)
        self._writer: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if self.is_sqlite else contextlib.nullcontext())

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries; nothing it does is committed."""
        with self._read() as session:
            yield session

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A session in one write transaction, committed on success, rolled back on error."""
        with self._writer, self._write() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """A Core connection in one write transaction (``BEGIN IMMEDIATE`` on SQLite),
        committed on success, rolled back on error: several Core statements as one change,
        without an ORM session's bookkeeping."""
        with self._writer, self.write_engine.begin() as conn:
            yield conn

    def execute(self, statement: sa.Executable, params: dict[str, Any] | None = None, *,
                write: bool = False) -> list[sa.Row[Any]]:
        """Run ``statement`` (a Core statement, not an ORM one) alone, as its own
        transaction, and return its rows (``[]`` when it returns none). ``write=True`` for
        anything that changes the store: it takes this process's writer turn first. Errors
        are SQLAlchemy's (``IntegrityError`` for a unique violation)."""
        if write:
            with self._writer, self._single.begin() as conn:
                result = conn.execute(statement, params)
                return list(result) if result.returns_rows else []
        with self._single.connect() as conn:
            result = conn.execute(statement, params)
            return list(result) if result.returns_rows else []

    def upgrade(self) -> None:
        """Apply every Alembic migration up to head (idempotent)."""
        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        cfg.attributes["engine"] = self.write_engine
        command.upgrade(cfg, "head")

    def dispose(self) -> None:
        self.engine.dispose()
        if self.write_engine is not self.engine:
            self.write_engine.dispose()
            self._single.dispose()
