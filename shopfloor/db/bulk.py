"""Bulk load of plain rows into a (usually temporary) table: COPY where the driver has it.

On PostgreSQL with psycopg2 the rows go in as one ``COPY ... FROM STDIN (FORMAT csv)``
per call: one round trip and no bound parameters, about ten times the rate of a
multi-row ``INSERT`` (see benchmarks/README.md, "Hourly aggregation"). Elsewhere they go
in as one executemany ``INSERT``, which SQLAlchemy packs into multi-row statements
("insertmanyvalues") or runs in process (SQLite).

Between two PostgreSQL databases :func:`copy_select` goes further: the source's
``COPY (SELECT ...) TO STDOUT`` is piped into the target's ``COPY ... FROM STDIN``, so
the rows pass through as CSV bytes and Python never builds a row.
"""

import io
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Select, Table, insert

# Bytes the target's COPY reads from the pipe at a time (psycopg2's default is 8 KiB).
PIPE_READ_SIZE = 256 * 1024
# psycopg2's default read size (8 KiB), the least :func:`copy_text` asks for.
COPY_READ_MIN = 8192


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


def copy_from_memory(cursor: Any, statement: str, data: io.StringIO | io.BytesIO) -> None:
    """Run ``COPY ... FROM STDIN`` on a psycopg2 ``cursor`` with its data (CSV text, or
    binary COPY bytes) already in memory, read in one piece.

    psycopg2 reads its source ``size`` characters at a time (8 KiB by default) and takes
    the GIL back for each read: with other threads busy (the MQTT collector decodes its
    next batch and paho reads the broker while a batch is written), each take can wait
    out the interpreter's switch interval (5 ms). Measured on a 50-message batch (5,000
    rows) during the collector's start: 43 ms; read whole, the collector's rate went up
    5 % (benchmarks/README.md, "MQTT ingestion").
    """
    size = max(len(data.getvalue()), COPY_READ_MIN)
    cursor.copy_expert(statement, data, size=size)


def copy_statement(conn: Connection, table: Table, columns: Sequence[str],
                   binary: bool = False) -> str:
    """``COPY <table> (<columns>) FROM STDIN (FORMAT csv)`` (``binary``: PostgreSQL's
    binary COPY format) with dialect-quoted names."""
    q = conn.dialect.identifier_preparer
    cols = ", ".join(q.quote(c) for c in columns)
    fmt = "binary" if binary else "csv"
    return f"COPY {q.format_table(table)} ({cols}) FROM STDIN (FORMAT {fmt})"


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
    if is_psycopg2(conn):
        cursor = conn.connection.cursor()  # the DBAPI cursor, inside the open transaction
        try:
            copy_from_memory(cursor, copy_statement(conn, table, columns), copy_csv(rows))
        finally:
            cursor.close()
        return len(rows)
    conn.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])
    return len(rows)


def is_psycopg2(bind: Connection | Engine) -> bool:
    """PostgreSQL through psycopg2 (``COPY`` from Python: ``copy_expert``)."""
    return bind.dialect.name == "postgresql" and bind.dialect.driver == "psycopg2"


def can_pipe(source: Connection | Engine, target: Connection | Engine) -> bool:
    """Whether :func:`copy_select` can run between these (PostgreSQL through psycopg2 on
    both sides)."""
    return is_psycopg2(source) and is_psycopg2(target)


def copy_select(source: Connection, query: Select, target: Connection, table: Table,
                columns: Sequence[str], ready: Callable[[], None] | None = None) -> None:
    """Stream the rows of ``query`` on ``source`` into ``table`` (``columns``, in the
    query's column order) on ``target``, inside both connections' open transactions.

    The source writes ``COPY (query) TO STDOUT (FORMAT csv)`` into a pipe from a thread
    while the target reads it with ``COPY ... FROM STDIN``: memory holds a pipe buffer,
    not the rows. psycopg2 interpolates parameters on the client for every statement;
    ``mogrify`` does the same here (COPY takes no server-side parameters). An error on
    either side stops both and is raised; the callers' transactions then roll back.

    ``ready`` is called once the source has sent its first bytes (a GROUP BY sends
    nothing until it has aggregated everything), before the target reads any: a caller
    can wait for its turn to write there (a concurrency slot) while the source works.
    """
    compiled = query.compile(dialect=source.dialect,
                             compile_kwargs={"render_postcompile": True})
    src, dst = source.connection.cursor(), target.connection.cursor()
    sql = src.mogrify(str(compiled), compiled.params).decode()
    read_fd, write_fd = os.pipe()
    reader, writer = os.fdopen(read_fd, "rb"), os.fdopen(write_fd, "wb")
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            src.copy_expert(f"COPY ({sql}) TO STDOUT (FORMAT csv)", writer)
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            errors.append(exc)
        finally:
            try:
                writer.close()  # EOF for the target's COPY
            except OSError as exc:  # the reader is gone: its error is the one to raise
                errors.append(exc)

    producer = threading.Thread(target=produce, name="copy-select", daemon=True)
    producer.start()
    try:
        if ready is not None:
            reader.peek(1)  # blocks until the source's first bytes (or its end)
            if not errors:
                ready()
        if not errors:
            dst.copy_expert(copy_statement(target, table, columns), reader,
                            size=PIPE_READ_SIZE)
    finally:
        reader.close()  # a producer still writing gets EPIPE and stops
        producer.join()
        src.close()
        dst.close()
    if errors:
        raise errors[0]
