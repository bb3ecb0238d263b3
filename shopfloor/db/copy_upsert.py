"""Upsert of many rows on PostgreSQL through ``COPY``: a temporary table, then one
``INSERT ... SELECT ... ON CONFLICT DO UPDATE``.

A forwarder draining a backlog writes thousands of rows per statement; sent as a
multi-row ``INSERT`` (:func:`shopfloor.db.upsert.upsert`) they cost a bound parameter
each, while ``COPY`` sends CSV in one round trip (:mod:`shopfloor.db.bulk`). Keys that
repeat within one call keep one row (``DISTINCT ON``), as a repeated upsert would.
"""

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Column, Connection, MetaData, Table, select
from sqlalchemy.dialects import postgresql

from shopfloor.db.bulk import bulk_insert, is_psycopg2

# Fewer rows go through the plain upsert: creating the temporary table costs more.
COPY_MIN_ROWS = 500


def can_copy_upsert(conn: Connection, rows: Sequence[object]) -> bool:
    """PostgreSQL through psycopg2, and enough rows to pay for the temporary table."""
    return len(rows) >= COPY_MIN_ROWS and is_psycopg2(conn)


def copy_upsert(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]],
                key_columns: Sequence[str]) -> int:
    """Upsert ``rows`` (dicts with the same keys) into ``table`` on ``conn`` (the
    caller's transaction). Returns the number of rows sent."""
    if not rows:
        return 0
    columns = list(rows[0])
    tmp = Table(f"tmp_copy_{uuid.uuid4().hex[:12]}", MetaData(),
                *(Column(c, table.c[c].type) for c in columns),
                prefixes=["TEMPORARY"], postgresql_on_commit="DROP")
    tmp.create(conn)
    # COPY bypasses the column types' bind processing (UtcDateTime stores naive UTC).
    procs = [table.c[c].type.bind_processor(conn.dialect) for c in columns]
    bulk_insert(conn, tmp, columns, [
        tuple(v if p is None or v is None else p(v)
              for v, p in zip((r[c] for c in columns), procs, strict=True))
        for r in rows])
    keys = [tmp.c[k] for k in key_columns]
    source = select(*(tmp.c[c] for c in columns)).distinct(*keys).order_by(*keys)
    stmt = postgresql.insert(table).from_select(columns, source)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(key_columns),
        set_={c: stmt.excluded[c] for c in columns if c not in key_columns})
    conn.execute(stmt)
    return len(rows)
