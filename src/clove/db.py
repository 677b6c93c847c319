"""Engine and session factory for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def normalize_url(url: str) -> str:
    """Accept `postgres://` and `postgresql://` and use psycopg 3 for both."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def is_sqlite(url: str) -> bool:
    return make_url(normalize_url(url)).get_backend_name() == "sqlite"


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalize_url(url)
    if is_sqlite(url):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; take control so that
        # writers take the lock at BEGIN and never deadlock on lock upgrades.
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
    # `x REGEXP p` for word matches in searches (PostgreSQL has `~`; SQLite leaves it undefined).
    dbapi_conn.create_function("regexp", 2, _regexp, deterministic=True)
    # lower() in SQLite folds ASCII letters only; searches ignore case for every letter.
    dbapi_conn.create_function("unicode_lower", 1, _unicode_lower, deterministic=True)


def _unicode_lower(value: str | None) -> str | None:
    return value.lower() if isinstance(value, str) else value


def _regexp(pattern: str, value: str | None) -> bool:
    return value is not None and _compiled(pattern).search(value) is not None


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _sqlite_begin(conn: Any) -> None:
    # Requests that write begin IMMEDIATE (see writing_session_factory): in WAL mode a deferred
    # transaction that reads and then writes fails at once with "database is locked" when
    # another writer committed in between; busy_timeout cannot help it.
    mode = conn.get_execution_options().get("sqlite_begin", "")
    conn.exec_driver_sql(f"BEGIN {mode}".rstrip())


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


def writing_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for requests that change data: on SQLite they take the write lock at BEGIN,
    so concurrent writers queue (busy_timeout) instead of failing; elsewhere no different."""
    return make_session_factory(engine.execution_options(sqlite_begin="IMMEDIATE"))
