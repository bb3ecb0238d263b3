"""Fixed-width time buckets computed by the database, identical on every dialect.

A bucket is ``floor(epoch seconds / width)``: an integer, so ``GROUP BY`` works on it
everywhere and the caller turns it back into an instant (``bucket * width``) in Python.
Epoch seconds are taken from the naive-UTC timestamps of :class:`UtcDateTime`, so no
session time zone is involved (MySQL's ``UNIX_TIMESTAMP`` would apply one; that is why
it is ``TIMESTAMPDIFF`` from 1970 there).
"""

from datetime import UTC, datetime, timedelta

from sqlalchemy import BigInteger
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIVE_MINUTES = 300


class time_bucket(FunctionElement):  # noqa: N801 - reads like the SQL function it stands for
    """``time_bucket(column, width_seconds)``: the index of the ``width``-second bucket."""

    type = BigInteger()
    name = "time_bucket"
    inherit_cache = True
    # The width is rendered inline, so it must be part of the statement's cache key: a
    # statement compiled for 3 h buckets is not the one for 5 min buckets.
    _traverse_internals = [*FunctionElement._traverse_internals,
                           ("width_seconds", InternalTraversal.dp_plain_obj)]

    def __init__(self, column: ColumnElement, width_seconds: int) -> None:
        if not isinstance(width_seconds, int) or isinstance(width_seconds, bool) \
                or width_seconds <= 0:
            raise ValueError(f"bucket width must be a positive int, got {width_seconds!r}")
        self.width_seconds = width_seconds
        super().__init__(column)

    def _column(self, compiler, **kw) -> str:
        (column,) = self.clauses.clauses
        return compiler.process(column, **kw)


# The width is a checked int and is rendered inline, not bound: the same expression
# appears in SELECT and GROUP BY, and PostgreSQL matches them only when they are equal
# text (two bound parameters would be two different expressions to it).

@compiles(time_bucket)
def _default(element: time_bucket, compiler, **kw) -> str:  # SQLite
    return (f"(CAST(strftime('%s', {element._column(compiler, **kw)}) AS INTEGER)"
            f" / {element.width_seconds})")


@compiles(time_bucket, "postgresql")
def _postgresql(element: time_bucket, compiler, **kw) -> str:
    return (f"CAST(floor(EXTRACT(EPOCH FROM {element._column(compiler, **kw)})"
            f" / {element.width_seconds}) AS BIGINT)")


@compiles(time_bucket, "mysql")
@compiles(time_bucket, "mariadb")
def _mysql(element: time_bucket, compiler, **kw) -> str:
    return (f"(TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', {element._column(compiler, **kw)})"
            f" DIV {element.width_seconds})")


@compiles(time_bucket, "mssql")
def _mssql(element: time_bucket, compiler, **kw) -> str:
    # DATEDIFF in seconds overflows int in 2038; DATEDIFF_BIG (SQL Server 2016+) does not.
    return (f"(DATEDIFF_BIG(second, '19700101', {element._column(compiler, **kw)})"
            f" / {element.width_seconds})")


def bucket_start(index: int, width_seconds: int) -> datetime:
    """The first UTC instant of bucket ``index``."""
    return EPOCH + timedelta(seconds=int(index) * width_seconds)

