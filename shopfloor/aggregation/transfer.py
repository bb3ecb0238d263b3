"""Aggregate windows on the source database; write and validate them on the target.

Only the hourly groups travel: the GROUP BY runs on the source, the rows it returns
are upserted into ``temperature_hourly`` on the target (which may be another database).
This module is the portable path (every dialect: the window's groups in Python, compared
with the target's rows, changed ones upserted); :mod:`.in_database` holds the staged
path used when the target is PostgreSQL or SQLite (groups piped from a PostgreSQL
source's ``COPY TO`` into the target's ``COPY FROM``, or streamed with
:func:`stream_groups`, into a temporary table; one ``INSERT ... SELECT ... ON CONFLICT``).
"""

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, func, select, text

from shopfloor.aggregation.hours import hour_start, local_hour_index, offset_segments, ymd_hh
from shopfloor.aggregation.statements import (
    COUNT_COLUMNS,
    HOURLY_KEY,
    VALUE_COLUMNS,
    aggregate_select,
    hourly_in_window_select,
    labelled_select,
    late_pairs_select,
    late_range_select,
    raw_count_select,
)
from shopfloor.aggregation.window_quality import finish_window
from shopfloor.aggregation.windows import Window
from shopfloor.db.schema import Tables
from shopfloor.db.upsert import upsert
from shopfloor.errors import DataIntegrityError
from shopfloor.settings import aggregation_work_mem

# The columns of a group as the staged path moves them (temperature_hourly's order).
HOURLY_COLUMNS = (*HOURLY_KEY, *VALUE_COLUMNS, "sample_count")

# Writers stamp ingested_at before they commit, so a row can become visible after a run
# has already moved the watermark past its ingested_at. Looking this far behind the
# watermark catches such rows; re-aggregating their hours again is harmless.
LATE_OVERLAP = timedelta(minutes=5)


class ValidationError(DataIntegrityError):
    """The hourly rows written do not match the source window."""


@dataclass
class WindowResult:
    """The hourly groups of one window and the raw row count they must add up to."""

    window: Window
    rows: list[dict[str, Any]]
    raw_count: int
    bounds: tuple[datetime, datetime] | None = None  # the window's UTC [start, end)


@dataclass
class WriteStats:
    """What writing some windows did on the target."""

    groups: int = 0
    upserted: int = 0
    unchanged: int = 0
    raw_rows: int = 0
    stale: list[tuple[str, str, str]] = field(default_factory=list)
    changed: set[tuple[str, str, str]] = field(default_factory=set)
    """Keys whose values this write changed (on the staged path: only of the rows it
    returns, those of active locations; they are the ones alerts look at)."""
    hours: set[tuple[str, str]] = field(default_factory=set)
    """``(ymd, hh)`` of every group written or found unchanged."""
    path: str = ""
    """How the groups got there: ``in-database``, ``staged`` or ``portable``."""
    run_id: str | None = None
    """Stored on the windows' quality rows."""
    quality: list[dict[str, Any]] = field(default_factory=list)
    """The ``quality_score`` row of every window written (see :mod:`.window_quality`)."""


@dataclass(frozen=True)
class LatePlan:
    """Hours with rows ingested after the watermark, and the watermark to move to."""

    pairs: list[tuple[str, int]]
    late_rows: int
    new_watermark: datetime | None


@contextmanager
def source_snapshot(engine: Engine) -> Iterator[Connection]:
    """A read transaction; where the dialect allows, one snapshot for all its statements.

    The GROUP BY and the raw count must see the same rows, or a reading arriving in
    between would fail the validation for nothing.
    """
    with engine.connect() as conn:
        if conn.dialect.name in ("postgresql", "mysql", "mariadb"):
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def tune_group_by(conn: Connection) -> None:
    """Give this transaction's GROUP BY the memory of :func:`aggregation_work_mem`
    (PostgreSQL only; ``set_config(..., true)`` is ``SET LOCAL`` with a bound value)."""
    work_mem = aggregation_work_mem()
    if conn.dialect.name == "postgresql" and work_mem:
        conn.execute(select(func.set_config("work_mem", work_mem, True)))


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def hourly_row(row: Any) -> dict[str, Any]:
    """A ``temperature_hourly`` row (without ``updated_at``) from one result group."""
    ymd, hh = ymd_hh(int(row["hour_index"]))
    out: dict[str, Any] = {"loc_id": row["loc_id"], "ymd": ymd, "hh": hh}
    out.update({c: _number(row[c]) for c in VALUE_COLUMNS})
    out.update({c: int(row[c] or 0) for c in COUNT_COLUMNS})
    out["sample_count"] = int(row["sample_count"])
    return out


def aggregate_window(conn: Connection, tables: Tables, window: Window,
                     tz: ZoneInfo) -> WindowResult:
    """Run the window's GROUP BY and raw count on the source; check they agree."""
    start, end = window.bounds(tz)
    segments = offset_segments(start, end, tz)
    stmt = aggregate_select(tables, segments, start, end, window.loc_ids)
    tune_group_by(conn)
    rows = [hourly_row(r) for r in conn.execute(stmt).mappings()]
    raw_count = conn.execute(raw_count_select(tables, start, end, window.loc_ids)).scalar_one()
    summed = sum(r["sample_count"] for r in rows)
    if summed != raw_count:
        raise ValidationError(
            f"window {window.label()}: sample counts add up to {summed} "
            f"but the source holds {raw_count} raw rows")
    return WindowResult(window, rows, int(raw_count), (start, end))


def stream_groups(conn: Connection, tables: Tables, window: Window, tz: ZoneInfo,
                  batch_size: int) -> Iterator[list[tuple[Any, ...]]]:
    """The window's hourly groups from the source, ``batch_size`` at a time, as tuples
    in :data:`HOURLY_COLUMNS` order.

    A server-side cursor where the driver has one (``stream_results``), so memory holds
    one batch whatever the window's size. Run the raw count before, not during: MySQL
    cannot run a statement on a connection whose streamed result is still open.
    """
    start, end = window.bounds(tz)
    segments = offset_segments(start, end, tz)
    labelled = conn.dialect.name in ("postgresql", "sqlite")
    if labelled:  # ymd/hh computed by the database: rows go on as they come
        stmt = labelled_select(tables, segments, start, end, window.loc_ids)
    else:
        stmt = aggregate_select(tables, segments, start, end, window.loc_ids)
    if conn.dialect.name == "postgresql":
        # A cursor is planned for its first 10 % of rows by default: on a window of weeks
        # that picks an index walk in key order (fast first group) over a sequential
        # scan, several times slower to the last group. We read every group.
        conn.execute(text("SET LOCAL cursor_tuple_fraction = 1.0"))
    tune_group_by(conn)
    # Options of this statement only: Connection.execution_options() would change the
    # connection, and the next window's SET and COUNT would go through a cursor too.
    result = conn.execute(stmt, execution_options={"stream_results": True,
                                                   "yield_per": batch_size})
    if labelled:
        for part in result.partitions(batch_size):
            yield [tuple(r) for r in part]
        return
    for part in result.mappings().partitions(batch_size):
        yield [tuple(row[c] for c in HOURLY_COLUMNS) for row in map(hourly_row, part)]


def _key(row: Any) -> tuple[str, str, str]:
    return row["loc_id"], row["ymd"], row["hh"]


def _same(old: Any, new: dict[str, Any], rel_tol: float) -> bool:
    if old is None or old["sample_count"] != new["sample_count"]:
        return False
    for c in VALUE_COLUMNS:
        a, b = old[c], new[c]
        # Parallel aggregation may sum in another order: compare floats, not bits.
        if (a is None) != (b is None) or (a is not None and not math.isclose(a, b,
                                                                             rel_tol=rel_tol)):
            return False
    return True


def _storage_tolerance(conn: Connection) -> float:
    # MySQL/MariaDB store Float columns as 32-bit FLOAT and return about 6 significant
    # digits: a stored value never equals the fresh double, only agrees to that precision.
    return 1e-5 if conn.dialect.name in ("mysql", "mariadb") else 1e-9


def _existing(conn: Connection, tables: Tables, window: Window) -> dict[tuple, Any]:
    return {_key(r): r for r in conn.execute(hourly_in_window_select(tables, window)).mappings()}


def write_window(conn: Connection, tables: Tables, result: WindowResult, now: datetime,
                 stats: WriteStats, batch_size: int = 5000) -> None:
    """Upsert the groups that changed, then check the target against the source.

    Unchanged rows are not rewritten, so a rerun keeps their ``updated_at`` and changes
    nothing. Raises :class:`ValidationError` (the caller's transaction rolls back).
    """
    before, tol = _existing(conn, tables, result.window), _storage_tolerance(conn)
    changed = [dict(r, updated_at=now) for r in result.rows
               if not _same(before.get(_key(r)), r, tol)]
    upsert(conn, tables.temperature_hourly, changed, HOURLY_KEY, batch_size=batch_size)
    after = _existing(conn, tables, result.window)
    expected = {_key(r): r["sample_count"] for r in result.rows}
    found = {k: after[k]["sample_count"] for k in expected if k in after}
    total = sum(found.values())
    if len(found) != len(expected) or total != result.raw_count:
        raise ValidationError(
            f"window {result.window.label()}: {len(expected)} groups in the source, "
            f"{len(found)} in the target; {result.raw_count} raw rows in the source, "
            f"sample counts in the target add up to {total}")
    stats.groups += len(expected)
    stats.upserted += len(changed)
    stats.unchanged += len(expected) - len(changed)
    stats.raw_rows += result.raw_count
    stats.stale += sorted(k for k in after if k not in expected)
    stats.changed.update(_key(r) for r in changed)
    stats.hours.update((r["ymd"], r["hh"]) for r in result.rows)
    if result.bounds is not None:  # daily rows and the quality row, in this transaction
        stats.quality.append(finish_window(
            conn, tables, result.window, result.bounds, result.raw_count, len(expected),
            list({r["loc_id"] for r in result.rows}), stats.run_id, now))


def plan_late(conn: Connection, tables: Tables, tz: ZoneInfo,
              watermark: datetime | None) -> LatePlan:
    """The ``(loc_id, hour)`` pairs that received rows since ``watermark`` (by ingested_at).

    No watermark means nothing was aggregated yet: every hour with rows is "late".
    """
    since = watermark - LATE_OVERLAP if watermark is not None else None
    first, last, upto, n = conn.execute(late_range_select(tables, since)).one()
    if not n:
        return LatePlan([], 0, watermark)
    start = hour_start(local_hour_index(first, tz), tz)
    end = hour_start(local_hour_index(last, tz) + 1, tz)
    segments = offset_segments(start, end, tz)
    stmt = late_pairs_select(tables, segments, since, upto, start, end)
    pairs = [(r.loc_id, int(r.hour_index)) for r in conn.execute(stmt)]
    new = max(upto, watermark) if watermark is not None else upto
    return LatePlan(pairs, int(n), new)
