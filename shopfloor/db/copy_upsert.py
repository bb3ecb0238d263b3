"""Upsert of many rows on PostgreSQL through ``COPY``.

A forwarder draining a backlog writes thousands of rows per statement. Sent as a
multi-row ``INSERT`` (:func:`shopfloor.db.upsert.upsert`) they cost a bound parameter
each; ``COPY`` sends CSV in one round trip (:mod:`shopfloor.db.bulk`). Rows of a backlog
are new in the common case, so they are first copied straight into the table inside a
savepoint; only when a key is already there (a replay after a crash, an overlapping
run) does the savepoint roll back and the rows go through a temporary table and one
``INSERT ... SELECT ... ON CONFLICT DO UPDATE``. Keys that repeat within one call keep
one row (``DISTINCT ON``), as a repeated upsert would.
"""

import io
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from psycopg2 import errors
from sqlalchemy import Column, Connection, MetaData, Table, select
from sqlalchemy.dialects import postgresql

from shopfloor.db.bulk import copy_csv, copy_from_memory, copy_statement, is_psycopg2

# Fewer rows go through the plain upsert: a savepoint and a COPY cost more.
COPY_MIN_ROWS = 500


def can_copy_upsert(bind: Any, n: int) -> bool:
    """PostgreSQL through psycopg2, and at least :data:`COPY_MIN_ROWS` rows."""
    return n >= COPY_MIN_ROWS and is_psycopg2(bind)


def _copy(conn: Connection, table: Table, columns: Sequence[str], data: str | bytes) -> None:
    cursor = conn.connection.cursor()
    binary = isinstance(data, bytes)
    try:
        copy_from_memory(cursor, copy_statement(conn, table, columns, binary),
                         io.BytesIO(data) if binary else io.StringIO(data))
    finally:
        cursor.close()


def copy_upsert_csv(conn: Connection, table: Table, columns: Sequence[str],
                    csv: str | bytes, key_columns: Sequence[str]) -> None:
    """Upsert the rows of ``csv`` (PostgreSQL CSV in ``columns`` order, values as the
    database stores them; or, as bytes, PostgreSQL's binary COPY format) into
    ``table``, in the caller's transaction."""
    savepoint = conn.begin_nested()
    try:
        _copy(conn, table, columns, csv)
    except (errors.UniqueViolation, errors.ExclusionViolation):
        savepoint.rollback()
    else:
        savepoint.commit()
        return
    tmp = Table(f"tmp_copy_{uuid.uuid4().hex[:12]}", MetaData(),
                *(Column(c, table.c[c].type) for c in columns),
                prefixes=["TEMPORARY"], postgresql_on_commit="DROP")
    tmp.create(conn)
    _copy(conn, tmp, columns, csv)
    keys = [tmp.c[k] for k in key_columns]
    source = select(*(tmp.c[c] for c in columns)).distinct(*keys).order_by(*keys)
    stmt = postgresql.insert(table).from_select(list(columns), source)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(key_columns),
        set_={c: stmt.excluded[c] for c in columns if c not in key_columns})
    conn.execute(stmt)
    tmp.drop(conn)


def copy_upsert(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]],
                key_columns: Sequence[str]) -> int:
    """Upsert ``rows`` (dicts with the same keys) into ``table`` on ``conn`` (the
    caller's transaction). Returns the number of rows sent."""
    if not rows:
        return 0
    columns = list(rows[0])
    # COPY bypasses the column types' bind processing (UtcDateTime stores naive UTC).
    procs = [table.c[c].type.bind_processor(conn.dialect) for c in columns]
    csv = copy_csv([tuple(v if p is None or v is None else p(v)
                          for v, p in zip((r[c] for c in columns), procs, strict=True))
                    for r in rows]).getvalue()
    copy_upsert_csv(conn, table, columns, csv, key_columns)
    return len(rows)
