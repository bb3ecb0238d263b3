"""Engines from URLs, schema creation and connection checks with clear errors."""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import CreateSchema

from shopfloor.db.schema import Tables, get_tables
from shopfloor.db.urls import display_url, parse_database_url
from shopfloor.errors import ShopfloorError, UserError, first_line


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets readers go on while one writer holds the lock; busy_timeout makes
    # concurrent writers (tasks, concurrent flow runs) wait instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str, **kwargs) -> Engine:
    """Create an engine for ``url``; SQLite files get their folder, WAL and a busy timeout."""
    parsed = parse_database_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, pool_pre_ping=True, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


@contextmanager
def write_transaction(engine: Engine, **execution_options: Any) -> Iterator[Connection]:
    """A transaction that holds the database's write lock from its start, committed on
    exit (rolled back on an exception): for claims and fences, which read and then write.

    SQLite's ordinary transaction is deferred: it starts as a reader and asks for the
    write lock at its first write, where a concurrent writer's commit makes it fail at
    once (``database is locked``, which the busy timeout cannot wait out: the snapshot it
    read is stale) after it has already decided from what it read. ``BEGIN IMMEDIATE``
    takes the lock at the start: a second writer waits there (up to the busy timeout)
    before reading anything. Other databases lock the rows they touch (``FOR UPDATE``,
    an ``UPDATE``'s row locks) and get an ordinary begin. ``execution_options`` (e.g.
    ``isolation_level``) apply to the connection before it begins.
    """
    with engine.connect() as conn:
        if execution_options:
            conn.execution_options(**execution_options)
        with conn.begin():
            if conn.dialect.name == "sqlite":
                # The driver's own begin is deferred; an explicit BEGIN IMMEDIATE replaces
                # it, and the commit or rollback of conn.begin() ends it.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn


def check_connection(engine: Engine, name: str) -> None:
    """Run ``SELECT 1``; on failure raise one line naming ``name`` and the reason."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = first_line(getattr(exc, "orig", None) or exc)
        password = engine.url.password
        if password:  # a driver may echo its connection string in the reason
            reason = reason.replace(str(password), "***")
        raise ShopfloorError(
            f"cannot connect to database {name!r} ({display_url(engine.url)}): {reason}"
        ) from None


def only_tables(tables: Tables, only: Sequence[str] | None) -> list[Table]:
    """The tables of ``only`` (table keys; ``None``: all), an unknown key refused."""
    by_key = tables.by_key()
    unknown = sorted(set(only or ()) - set(by_key))
    if unknown:
        raise UserError(f"unknown table {', '.join(unknown)}; one of: {', '.join(by_key)}")
    return [by_key[k] for k in (only or by_key)]


def init_db(engine: Engine, schema: str | None = None, tables: Tables | None = None,
            only: Sequence[str] | None = None) -> Tables:
    """Create the schema (if any) and every missing table of DESIGN.md; safe to repeat.

    ``tables`` (e.g. :func:`~shopfloor.db.schema.configured_tables`) overrides ``schema``;
    ``only`` limits it to these table keys (``temperature_hourly``, ...), e.g. for a
    database that holds the seed's raw table and gets only shopfloor's watermark.
    A table that exists is left as it is (see :mod:`shopfloor.db.check` to compare it).
    """
    tables = tables if tables is not None else get_tables(schema)
    schema = tables.schema
    with engine.begin() as conn:
        if schema and engine.dialect.name not in ("sqlite",):
            if engine.dialect.name in ("mysql", "mariadb"):
                conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{schema}`"))
            else:
                conn.execute(CreateSchema(schema, if_not_exists=True))
        wanted = set(only_tables(tables, only))
        core = [t for t in tables.metadata.sorted_tables
                if not t.name.startswith("sqlt_data_") and t in wanted]
        tables.metadata.create_all(conn, tables=core, checkfirst=True)
    return tables
