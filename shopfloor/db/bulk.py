"""Bulk load of plain rows into a (usually temporary) table: COPY where the driver has it.

On PostgreSQL with psycopg2 the rows go in as one ``COPY ... FROM STDIN (FORMAT csv)``
per call: one round trip and no bound parameters, about ten times the rate of a
multi-row ``INSERT`` (see benchmarks/README.md, "Hourly aggregation"). Elsewhere they go
in as one executemany ``INSERT``, which SQLAlchemy packs into multi-row statements
("insertmanyvalues") or runs in process (SQLite).
"""

import io
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table, insert


def _field(value: Any) -> str:
    if value is None:
        return ""  # unquoted empty: NULL in PostgreSQL's CSV
    if isinstance(value, str):
        return '"' + value.replace('"', '""') + '"'  # quoted: "" stays an empty string
    return repr(value) if isinstance(value, float) else str(value)


def copy_csv(rows: Sequence[Sequence[Any]]) -> io.StringIO:
    """The rows as PostgreSQL CSV: ``None`` is an unquoted empty field (NULL), every
    string is quoted (an empty string stays one), floats are written exactly (``repr``).
    """
    buf = io.StringIO()
    for row in rows:
        buf.write(",".join(_field(v) for v in row))
        buf.write("\n")
    buf.seek(0)
    return buf


def copy_statement(conn: Connection, table: Table, columns: Sequence[str]) -> str:
    """``COPY <table> (<columns>) FROM STDIN (FORMAT csv)`` with dialect-quoted names."""
    q = conn.dialect.identifier_preparer
    cols = ", ".join(q.quote(c) for c in columns)
    return f"COPY {q.format_table(table)} ({cols}) FROM STDIN (FORMAT csv)"


def bulk_insert(conn: Connection, table: Table, columns: Sequence[str],
                rows: Sequence[Sequence[Any]]) -> int:
    """Insert ``rows`` (tuples in ``columns`` order) into ``table`` on ``conn``.

    The caller owns the transaction; the rows are sent in one call, so pass them in
    batches to keep memory flat.

    Returns:
        The number of rows sent.
    """
    if not rows:
        return 0
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg2":
        cursor = conn.connection.cursor()  # the DBAPI cursor, inside the open transaction
        try:
            cursor.copy_expert(copy_statement(conn, table, columns), copy_csv(rows))
        finally:
            cursor.close()
        return len(rows)
    conn.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])
    return len(rows)
