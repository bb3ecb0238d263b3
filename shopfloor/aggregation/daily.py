"""The daily rollup (``temperature_daily``) from the hourly rows, exact across DST.

An hourly row carries per measure the count of non-null samples, their sum, min and
max; a day sums the counts and sums, takes the min of the mins and the max of the maxes,
and only then divides: ``avg = sum / count`` (``NULL`` when no sample had the measure).
No average of averages, so an hour with 10 samples weighs ten times one with 1.

The day of an hour is its local ``ymd`` (``ymd``/``hh`` of ``temperature_hourly`` are
local to the plant's zone), so a day is whatever local hours it has: 23 on the spring
DST day, 25 on the autumn one (the repeated local hour is one hourly bucket holding two
hours of samples, see :mod:`.hours`).

Why a table kept current and not a view: a view would re-aggregate every hour of the
range on each read (a year of 200 locations is 1.75 M hourly rows per chart), and a
materialized view is PostgreSQL-only and refreshed whole. The table is upserted for the
days each hourly write touches, in that write's transaction, on every dialect.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, select

from shopfloor.aggregation.hours import ymd_hh
from shopfloor.aggregation.statements import MEASURES
from shopfloor.aggregation.windows import Window
from shopfloor.db.schema import Tables
from shopfloor.db.upsert import upsert

DAILY_KEY = ("loc_id", "ymd")
PARTS = ("count", "sum", "min", "max")


def window_days(window: Window) -> list[str]:
    """The local days (``YYYYMMDD``) the window's hours fall on, in order."""
    if window.last <= window.first:
        return []
    first, last = ymd_hh(window.first)[0], ymd_hh(window.last - 1)[0]
    days, index = [first], window.first
    while days[-1] != last:  # step a day of local hours at a time (indexes are local)
        index += 24
        day = ymd_hh(min(index, window.last - 1))[0]
        if day != days[-1]:
            days.append(day)
    return days


def daily_select(tables: Tables, days: Sequence[str], loc_ids: Sequence[str] | None = None):
    """Per (loc_id, ymd) of ``days``: the hourly parts summed (count, sum), min'd, max'd,
    the number of hourly rows and of samples."""
    h = tables.temperature_hourly
    aggs = []
    for m in MEASURES:
        aggs += [func.sum(h.c[f"{m}_count"]).label(f"{m}_count"),
                 func.sum(h.c[f"{m}_sum"]).label(f"{m}_sum"),
                 func.min(h.c[f"{m}_min"]).label(f"{m}_min"),
                 func.max(h.c[f"{m}_max"]).label(f"{m}_max")]
    cond = h.c.ymd.in_(list(days))
    if loc_ids is not None:
        cond = and_(cond, h.c.loc_id.in_(list(loc_ids)))
    return (select(h.c.loc_id, h.c.ymd, *aggs, func.count().label("hours"),
                   func.sum(h.c.sample_count).label("sample_count"))
            .where(cond).group_by(h.c.loc_id, h.c.ymd))


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def daily_row(group: Mapping[str, Any]) -> dict[str, Any]:
    """A ``temperature_daily`` row (without ``updated_at``) from one day's summed parts:
    ``avg = sum / count``, NULL (and min/max/sum NULL) when no sample had the measure."""
    out: dict[str, Any] = {"loc_id": group["loc_id"], "ymd": group["ymd"]}
    for m in MEASURES:
        n = int(group[f"{m}_count"] or 0)
        total = _num(group[f"{m}_sum"]) if n else None
        out[f"{m}_count"] = n
        out[f"{m}_sum"] = total
        out[f"{m}_min"] = _num(group[f"{m}_min"]) if n else None
        out[f"{m}_max"] = _num(group[f"{m}_max"]) if n else None
        out[f"{m}_avg"] = total / n if n and total is not None else None
    out["hours"] = int(group["hours"])
    out["sample_count"] = int(group["sample_count"] or 0)
    return out


def lock_days(conn: Connection, tables: Tables, days: Sequence[str]) -> None:
    """On PostgreSQL, hold a transaction lock per day of ``days`` until the commit.

    Two writers of one day (two backfill chunks of 12 hours, a backfill beside a plain
    hourly call without the warehouse limit) would each sum the hourly rows they can see
    and the later commit would keep a day without the other's hours. With the lock the
    second waits, and its daily SELECT (a new statement in READ COMMITTED) sees the first
    one's hours; under REPEATABLE READ it fails with a serialization error instead of
    writing a stale day. Locks are taken in day order, so two writers cannot deadlock.
    """
    if conn.dialect.name != "postgresql":
        return  # SQLite writes one transaction at a time; see docs/aggregation.md
    name = tables.temperature_daily.fullname
    for day in sorted(days):
        conn.execute(select(func.pg_advisory_xact_lock(
            func.hashtextextended(f"shopfloor:{name}:{day}", 0))))


def refresh_days(conn: Connection, tables: Tables, days: Sequence[str],
                 loc_ids: Sequence[str] | None, now: datetime) -> int:
    """Upsert the daily rows of ``days`` (optionally only some locations) from the hourly
    table, in the caller's transaction; returns how many rows were written."""
    if not days:
        return 0
    lock_days(conn, tables, days)
    rows = [dict(daily_row(g), updated_at=now)
            for g in conn.execute(daily_select(tables, days, loc_ids)).mappings()]
    upsert(conn, tables.temperature_daily, rows, DAILY_KEY)
    return len(rows)
