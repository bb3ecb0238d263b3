"""Portable batch upsert: one statement per batch of thousands of rows, on every dialect.

- PostgreSQL and SQLite: ``INSERT ... ON CONFLICT (keys) DO UPDATE``
- MySQL / MariaDB: ``INSERT ... ON DUPLICATE KEY UPDATE``
- SQL Server: ``MERGE ... USING (VALUES ...)``

On PostgreSQL the statement carries ``RETURNING`` so that SQLAlchemy's "insertmanyvalues"
packs each batch into one multi-row ``VALUES`` statement (SQLAlchemy 2.0 does not batch
``ON CONFLICT`` without it, and psycopg2's plain executemany is one round trip per row).
PyMySQL rewrites an executemany into multi-row ``VALUES`` itself; SQLite runs in
process. SQL Server's MERGE is built as one multi-row statement per batch, within its
2,100-parameter limit.
"""

from collections.abc import Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

from sqlalchemy import Connection, Table, bindparam, text
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import TextClause

DEFAULT_BATCH_SIZE = 5000
MSSQL_MAX_PARAMS = 2000  # SQL Server allows 2,100 parameters per statement


def _batches(rows: Sequence[Mapping[str, Any]], size: int) -> Iterator[list[Mapping[str, Any]]]:
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


def _update_columns(
    table: Table, columns: Sequence[str], key_columns: Sequence[str],
    update_columns: Sequence[str] | None,
) -> list[str]:
    if update_columns is not None:
        return list(update_columns)
    return [c for c in columns if c not in key_columns]


def _on_conflict_insert(dialect_name: str, table: Table, key_columns: Sequence[str],
                        update_cols: Sequence[str]):
    if dialect_name == "postgresql":
        stmt = postgresql.insert(table)
    else:
        stmt = sqlite.insert(table)
    if not update_cols:
        return stmt.on_conflict_do_nothing(index_elements=list(key_columns))
    return stmt.on_conflict_do_update(
        index_elements=list(key_columns),
        set_={c: stmt.excluded[c] for c in update_cols},
    )


def _mysql_insert(table: Table, key_columns: Sequence[str], update_cols: Sequence[str]):
    stmt = mysql.insert(table)
    # With nothing to update, re-assigning a key column to itself is MySQL's no-op upsert.
    set_ = {c: stmt.inserted[c] for c in update_cols} or {key_columns[0]: table.c[key_columns[0]]}
    return stmt.on_duplicate_key_update(set_)


def build_mssql_merge(
    table: Table, columns: Sequence[str], key_columns: Sequence[str],
    update_columns: Sequence[str], n_rows: int, dialect: Dialect,
) -> TextClause:
    """A SQL Server ``MERGE`` of ``n_rows`` rows; every value is a bound ``:p{row}_{col}``."""
    q = dialect.identifier_preparer
    target = q.format_table(table)
    cols = ", ".join(q.quote(c) for c in columns)
    values = ", ".join(
        "(" + ", ".join(f":p{r}_{i}" for i in range(len(columns))) + ")" for r in range(n_rows)
    )
    on = " AND ".join(f"t.{q.quote(k)} = s.{q.quote(k)}" for k in key_columns)
    parts = [
        f"MERGE INTO {target} WITH (HOLDLOCK) AS t",
        f"USING (VALUES {values}) AS s ({cols})",
        f"ON {on}",
    ]
    if update_columns:
        sets = ", ".join(f"t.{q.quote(c)} = s.{q.quote(c)}" for c in update_columns)
        parts.append(f"WHEN MATCHED THEN UPDATE SET {sets}")
    src = ", ".join(f"s.{q.quote(c)}" for c in columns)
    # Identifiers are quoted by the dialect; values are bound parameters.
    parts.append(f"WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({src});")  # noqa: S608
    stmt = text("\n".join(parts))
    binds = [
        bindparam(f"p{r}_{i}", type_=table.c[c].type)
        for r in range(n_rows) for i, c in enumerate(columns)
    ]
    return stmt.bindparams(*binds)


def _mssql_upsert(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]],
                  columns: Sequence[str], key_columns: Sequence[str],
                  update_cols: Sequence[str]) -> None:
    per_stmt = max(1, MSSQL_MAX_PARAMS // len(columns))
    for batch in _batches(rows, per_stmt):
        stmt = build_mssql_merge(table, columns, key_columns, update_cols, len(batch),
                                 conn.dialect)
        params = {f"p{r}_{i}": row.get(c) for r, row in enumerate(batch)
                  for i, c in enumerate(columns)}
        conn.execute(stmt, params)


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    key_columns: Sequence[str],
    update_columns: Sequence[str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> int:
    """Insert ``rows`` into ``table``, updating the rows whose ``key_columns`` already exist.

    Args:
        conn: an open connection; the caller owns the transaction.
        table: the target table; ``key_columns`` must be its primary key or a unique key.
        rows: mappings of column name to value, all with the same keys.
        key_columns: the conflict key.
        update_columns: columns to overwrite on conflict (default: all non-key columns
            present in the rows; an empty list means insert-or-ignore).
        batch_size: rows per round trip.

    Returns:
        The number of rows sent.
    """
    if not rows:
        return 0
    columns = list(rows[0].keys())
    update_cols = _update_columns(table, columns, key_columns, update_columns)
    name = conn.dialect.name
    if name == "mssql":
        _mssql_upsert(conn, table, rows, columns, key_columns, update_cols)
        return len(rows)
    if name in ("postgresql", "sqlite"):
        stmt = _on_conflict_insert(name, table, key_columns, update_cols)
    elif name in ("mysql", "mariadb"):
        stmt = _mysql_insert(table, key_columns, update_cols)
    else:
        raise NotImplementedError(f"upsert is not implemented for dialect {name!r}")
    if name == "postgresql":
        stmt = stmt.returning(table.c[key_columns[0]])
    conn = conn.execution_options(insertmanyvalues_page_size=batch_size)
    for batch in _batches(rows, batch_size):
        result = conn.execute(stmt, batch)
        if result.returns_rows:
            result.close()
    return len(rows)
