"""Database access: one engine per process, one session per request (or per unit of work).

Views call :func:`session` to get the request's session and :func:`commit` to write; anything not
committed when the request ends is rolled back. Integrity errors become 409 Conflict.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from flask import Flask, current_app, g
from sqlalchemy import DateTime, create_engine, exc
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from control.common import errors

# Times kept to the microsecond (token revocation, ordering of fast events).
PRECISE_DATETIME = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def utcnow() -> datetime:
    """Naive UTC (MariaDB DATETIME has no zone); every time in the database is UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Parent of each service's own declarative base (each service has its own metadata)."""


class Database:
    def __init__(
        self, url: str, pool_size: int = 5, echo: bool = False, isolation_level: str | None = None
    ) -> None:
        """``isolation_level`` (e.g. ``"READ COMMITTED"``) for every transaction of this engine;
        MariaDB's default, REPEATABLE READ, otherwise."""
        kwargs: dict[str, Any] = {"pool_pre_ping": True, "pool_recycle": 3600, "echo": echo}
        if not url.startswith("sqlite"):
            kwargs.update(pool_size=pool_size, max_overflow=pool_size * 2)
            if isolation_level:
                kwargs["isolation_level"] = isolation_level
        self.url = url
        self.engine: Engine = create_engine(url, **kwargs)
        self.sessionmaker = sessionmaker(bind=self.engine, expire_on_commit=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any exception."""
        with self.sessionmaker() as sess:
            try:
                yield sess
                sess.commit()
            except Exception:
                sess.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()


def init_app(app: Flask, database: Database) -> None:
    app.extensions["cirrus.db"] = database

    @app.teardown_request
    def _close_session(_exc: BaseException | None) -> None:
        sess: Session | None = g.pop("db_session", None)
        if sess is not None:
            sess.rollback()
            sess.close()


def database() -> Database:
    db: Database = current_app.extensions["cirrus.db"]
    return db


def session() -> Session:
    sess: Session | None = g.get("db_session")
    if sess is None:
        sess = database().sessionmaker()
        g.db_session = sess
    return sess


def commit(conflict_message: str = "The request conflicts with an existing resource.") -> None:
    """Commit the request's session; a unique-key clash becomes 409 with ``conflict_message``."""
    sess = session()
    try:
        sess.commit()
    except exc.IntegrityError:
        sess.rollback()
        raise errors.Conflict(conflict_message) from None
