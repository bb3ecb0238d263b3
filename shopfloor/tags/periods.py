"""The UTC hour or day a timestamp falls in, as SQL on every dialect.

Timestamps are naive UTC on every dialect (:class:`~shopfloor.db.types.UtcDateTime`), so
truncating them needs no time zone: ``date_trunc`` on PostgreSQL, the stored text's
prefix on SQLite (SQLAlchemy stores ``YYYY-MM-DD HH:MM:SS.ffffff``, and the result must
compare equal to a stored period start), ``TIMESTAMP(DATE(ts), MAKETIME(...))`` on
MySQL/MariaDB (no ``%`` in the SQL text: PyMySQL would read it as a parameter), and
``DATEADD``/``DATEDIFF`` on SQL Server.
"""

from datetime import datetime, timedelta

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from shopfloor.db.types import UtcDateTime

HOUR, DAY = "hour", "day"
STEP = {HOUR: timedelta(hours=1), DAY: timedelta(days=1)}


def floor_period(ts: datetime, unit: str) -> datetime:
    """The start of the UTC hour or day of ``ts`` (aware or naive UTC), in Python."""
    if unit == HOUR:
        return ts.replace(minute=0, second=0, microsecond=0)
    return ts.replace(hour=0, minute=0, second=0, microsecond=0)


class _PeriodFloor(FunctionElement):
    """The start of the UTC hour (or day) of a naive UTC timestamp; one class per unit,
    so SQLAlchemy's statement cache tells them apart."""

    type = UtcDateTime()
    inherit_cache = True
    unit = HOUR


class hour_floor(_PeriodFloor):  # noqa: N801 (SQL function style)
    """``hour_floor(ts)``: the start of the UTC hour of ``ts``."""

    inherit_cache = True
    name = "hour_floor"
    unit = HOUR


class day_floor(_PeriodFloor):  # noqa: N801 (SQL function style)
    """``day_floor(ts)``: the start of the UTC day of ``ts``."""

    inherit_cache = True
    name = "day_floor"
    unit = DAY


def period_floor(ts, unit: str) -> _PeriodFloor:
    """``hour_floor(ts)`` or ``day_floor(ts)``."""
    return {HOUR: hour_floor, DAY: day_floor}[unit](ts)


def _ts(element: _PeriodFloor, compiler, **kw) -> str:
    return compiler.process(list(element.clauses)[0], **kw)


@compiles(hour_floor)
@compiles(day_floor)
def _sqlite(element, compiler, **kw) -> str:
    fmt = "%Y-%m-%d %H:00:00.000000" if element.unit == HOUR else "%Y-%m-%d 00:00:00.000000"
    return f"strftime('{fmt}', {_ts(element, compiler, **kw)})"


@compiles(hour_floor, "postgresql")
@compiles(day_floor, "postgresql")
def _postgresql(element, compiler, **kw) -> str:
    # A timestamp without time zone: date_trunc does not look at the session's zone.
    return f"date_trunc('{element.unit}', {_ts(element, compiler, **kw)})"


@compiles(hour_floor, "mysql")
@compiles(day_floor, "mysql")
@compiles(hour_floor, "mariadb")
@compiles(day_floor, "mariadb")
def _mysql(element, compiler, **kw) -> str:
    ts = _ts(element, compiler, **kw)
    if element.unit == HOUR:
        return f"TIMESTAMP(DATE({ts}), MAKETIME(HOUR({ts}), 0, 0))"
    return f"TIMESTAMP(DATE({ts}))"


@compiles(hour_floor, "mssql")
@compiles(day_floor, "mssql")
def _mssql(element, compiler, **kw) -> str:
    ts = _ts(element, compiler, **kw)
    return (f"DATEADD({element.unit}, DATEDIFF({element.unit}, 0, {ts}), "
            "CAST('19000101' AS DATETIME2(6)))")
