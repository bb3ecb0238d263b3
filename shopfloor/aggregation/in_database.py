"""The in-database path: source and target are the same PostgreSQL or SQLite database.

The window's GROUP BY goes straight into a temporary table and from there into
``temperature_hourly`` with one ``INSERT ... SELECT ... ON CONFLICT DO UPDATE WHERE
changed``; nothing but counts and the window's hourly rows (for alerts) leaves the
server. Validation is the same as on the transfer path: the sample counts add up to the
raw row count, and every group is in the target with its count.
"""

import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite

from shopfloor.aggregation.hours import offset_segments
from shopfloor.aggregation.statements import (
    HOURLY_KEY,
    VALUE_COLUMNS,
    hourly_in_window_select,
    labelled_select,
    raw_count_select,
)
from shopfloor.aggregation.transfer import (
    ValidationError,
    WriteStats,
    aggregate_window,
    source_snapshot,
    write_window,
)
from shopfloor.aggregation.windows import Window
from shopfloor.db.schema import Tables
from shopfloor.db.types import UtcDateTime

DIALECTS = ("postgresql", "sqlite")
COLUMNS = (*HOURLY_KEY, *VALUE_COLUMNS, "sample_count")


def supported(source: Engine, target: Engine) -> bool:
    """True when both blocks point at the same PostgreSQL or SQLite database."""
    same = source.url.render_as_string(False) == target.url.render_as_string(False)
    return same and target.dialect.name in DIALECTS


def _temp_table() -> Table:
    return Table(
        f"tmp_hourly_{uuid.uuid4().hex[:12]}", MetaData(),
        Column("loc_id", String(32)), Column("ymd", String(8)), Column("hh", String(2)),
        *(Column(c, Float) for c in VALUE_COLUMNS),
        Column("sample_count", Integer),
        prefixes=["TEMPORARY"],
    )


def _upsert_from(conn: Connection, hourly: Table, tmp: Table, now: datetime) -> int:
    mod = postgresql if conn.dialect.name == "postgresql" else sqlite
    # "WHERE true" keeps SQLite from reading ON CONFLICT as a join constraint.
    source = select(*(tmp.c[c] for c in COLUMNS), literal(now, UtcDateTime)).where(true())
    stmt = mod.insert(hourly).from_select([*COLUMNS, "updated_at"], source)
    changed = or_(*(hourly.c[c].is_distinct_from(stmt.excluded[c])
                    for c in (*VALUE_COLUMNS, "sample_count")))
    stmt = stmt.on_conflict_do_update(
        index_elements=list(HOURLY_KEY),
        set_={c: stmt.excluded[c] for c in (*VALUE_COLUMNS, "sample_count", "updated_at")},
        where=changed,  # unchanged rows keep their updated_at: a rerun changes nothing
    )
    return conn.execute(stmt).rowcount


def _check(conn: Connection, tables: Tables, tmp: Table, window: Window,
           raw_count: int) -> tuple[int, list[tuple[str, str, str]]]:
    h = tables.temperature_hourly
    groups, summed = conn.execute(select(func.count(), func.sum(tmp.c.sample_count))).one()
    on = and_(*(h.c[k] == tmp.c[k] for k in HOURLY_KEY), h.c.sample_count == tmp.c.sample_count)
    found, found_sum = conn.execute(
        select(func.count(), func.sum(h.c.sample_count)).select_from(tmp.join(h, on))).one()
    summed, found_sum = int(summed or 0), int(found_sum or 0)
    if summed != raw_count or found != groups or found_sum != raw_count:
        raise ValidationError(
            f"window {window.label()}: {groups} groups in the source adding up to {summed} "
            f"samples, {found} in the target adding up to {found_sum}; {raw_count} raw rows")
    inside = hourly_in_window_select(tables, window).subquery("inside")
    stale = conn.execute(select(*(inside.c[k] for k in HOURLY_KEY)).where(~exists().where(
        and_(*(tmp.c[k] == inside.c[k] for k in HOURLY_KEY))))).all()
    return int(groups), [tuple(r) for r in stale]


def aggregate_in_database(engine: Engine, tables: Tables, window: Window, tz: ZoneInfo,
                          now: datetime) -> tuple[WriteStats, list[dict[str, Any]]]:
    """Aggregate, upsert and validate one window inside one database and transaction.

    Returns:
        The write statistics and the window's hourly rows of active locations (the
        only ones that can breach a threshold).
    """
    start, end = window.bounds(tz)
    segments = offset_segments(start, end, tz)
    tmp = _temp_table()
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":  # the count and the GROUP BY see one snapshot
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            tmp.create(conn)
            raw_count = conn.execute(
                raw_count_select(tables, start, end, window.loc_ids)).scalar_one()
            conn.execute(insert(tmp).from_select(
                list(COLUMNS), labelled_select(tables, segments, start, end, window.loc_ids)))
            upserted = _upsert_from(conn, tables.temperature_hourly, tmp, now)
            groups, stale = _check(conn, tables, tmp, window, int(raw_count))
            # Only rows of locations with thresholds can breach: the rest stay on the server.
            loc = tables.location
            with_limits = select(loc.c.loc_id).where(loc.c.active.is_(True))
            rows = [dict(r) for r in conn.execute(
                select(tmp).where(tmp.c.loc_id.in_(with_limits))).mappings()]
            tmp.drop(conn)
    stats = WriteStats(groups=groups, upserted=upserted, unchanged=groups - upserted,
                       raw_rows=int(raw_count), stale=stale)
    return stats, rows


def aggregate_and_write(source: Engine, target: Engine, tables: Tables, window: Window,
                        tz: ZoneInfo, now: datetime) -> tuple[WriteStats, list[dict[str, Any]]]:
    """One window end to end in its own target transaction (a backfill chunk).

    In one database the rows never leave the server; across databases the groups are
    fetched from the source and upserted into the target.
    """
    if supported(source, target):
        return aggregate_in_database(target, tables, window, tz, now)
    with source_snapshot(source) as conn:
        result = aggregate_window(conn, tables, window, tz)
    stats = WriteStats()
    with target.begin() as conn:
        write_window(conn, tables, result, now, stats)
    return stats, result.rows
