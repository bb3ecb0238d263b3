"""Writing windows through a temporary table on PostgreSQL and SQLite targets.

Three paths, chosen by :func:`choose_path` for a (source, target) pair:

- ``in-database``: source and target are the same PostgreSQL or SQLite database. The
  window's GROUP BY goes straight into a temporary table (``INSERT ... SELECT``); no row
  leaves the server on the way in.
- ``staged``: another source, a PostgreSQL or SQLite target. From a PostgreSQL source
  into a PostgreSQL target the groups are piped as CSV from the source's ``COPY (SELECT
  ...) TO STDOUT`` into the temporary table's ``COPY FROM STDIN``
  (:func:`shopfloor.db.bulk.copy_select`: no row is built in Python); otherwise they are
  streamed from the source in batches (server-side cursor) and bulk-loaded (``COPY`` on
  PostgreSQL, see :mod:`shopfloor.db.bulk`). Memory holds a batch or a pipe buffer.
- ``portable``: MySQL/MariaDB or SQL Server targets: the transfer path of
  :mod:`.transfer` (groups fetched, compared, changed ones upserted in batches).

From the temporary table both staged paths write ``temperature_hourly`` with one
``INSERT ... SELECT ... ON CONFLICT DO UPDATE WHERE <values changed>`` (unchanged rows
keep their ``updated_at``) and validate in SQL: the sample counts add up to the raw row
count of the source window, and every group is in the target with its count. Only
counts, the ``(ymd, hh)`` written and the rows of active locations (for alerts) come
back to Python.
"""

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Column,
    ColumnElement,
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
    text,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite

from shopfloor.aggregation.hours import offset_segments
from shopfloor.aggregation.statements import (
    COUNT_COLUMNS,
    HOURLY_KEY,
    VALUE_COLUMNS,
    hourly_in_window_select,
    labelled_select,
    raw_count_select,
)
from shopfloor.aggregation.transfer import (
    HOURLY_COLUMNS,
    ValidationError,
    WriteStats,
    aggregate_window,
    source_snapshot,
    stream_groups,
    tune_group_by,
    write_window,
)
from shopfloor.aggregation.window_quality import finish_window
from shopfloor.aggregation.windows import Window
from shopfloor.db.bulk import bulk_insert, can_pipe, copy_select
from shopfloor.db.schema import Tables
from shopfloor.db.types import UtcDateTime

DIALECTS = ("postgresql", "sqlite")
COLUMNS = HOURLY_COLUMNS
IN_DATABASE, STAGED, PORTABLE = "in-database", "staged", "portable"
# Values this close are the same (the portable path's tolerance, see transfer._same).
REL_TOL = 1e-9
# Groups per fetch from the source and per COPY into the target: a few MB of Python rows.
BATCH_SIZE = 10_000


def supported(source: Engine, target: Engine) -> bool:
    """True when both blocks point at the same PostgreSQL or SQLite database."""
    same = source.url.render_as_string(False) == target.url.render_as_string(False)
    return same and target.dialect.name in DIALECTS


def choose_path(source: Engine, target: Engine) -> str:
    """``in-database``, ``staged`` or ``portable`` (see the module docstring)."""
    if supported(source, target):
        return IN_DATABASE
    return STAGED if target.dialect.name in DIALECTS else PORTABLE


def _temp_table() -> Table:
    return Table(
        f"tmp_hourly_{uuid.uuid4().hex[:12]}", MetaData(),
        Column("loc_id", String(32)), Column("ymd", String(8)), Column("hh", String(2)),
        *(Column(c, Integer if c in COUNT_COLUMNS else Float) for c in VALUE_COLUMNS),
        Column("sample_count", Integer),
        prefixes=["TEMPORARY"],
    )


def _differs(old: ColumnElement, new: ColumnElement) -> ColumnElement:
    """NULL on one side only, or more apart than :data:`REL_TOL` (``math.isclose``'s rule).

    An AVG may come back a bit different for the same rows (another plan, parallel
    workers, a table rewritten by an UPDATE: the sum runs in another order), so equal
    bits would call an unchanged hour changed and rewrite its ``updated_at``.
    """
    one_null = or_(and_(old.is_(None), new.is_not(None)), and_(old.is_not(None), new.is_(None)))
    return or_(one_null, func.abs(old - new) > REL_TOL * (func.abs(old) + func.abs(new)))


def _upsert_from(conn: Connection, hourly: Table, tmp: Table, now: datetime) -> int:
    mod = postgresql if conn.dialect.name == "postgresql" else sqlite
    # "WHERE true" keeps SQLite from reading ON CONFLICT as a join constraint.
    source = select(*(tmp.c[c] for c in COLUMNS), literal(now, UtcDateTime)).where(true())
    stmt = mod.insert(hourly).from_select([*COLUMNS, "updated_at"], source)
    changed = or_(hourly.c.sample_count.is_distinct_from(stmt.excluded.sample_count),
                  *(_differs(hourly.c[c], stmt.excluded[c]) for c in VALUE_COLUMNS))
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


def _rows_back(conn: Connection, tables: Tables, tmp: Table, now: datetime,
               stats: WriteStats) -> list[dict[str, Any]]:
    """The hours written, and the rows of active locations (the only ones that can
    breach a threshold; the rest stay on the server) with the keys this write changed."""
    stats.hours.update(tuple(r) for r in conn.execute(select(tmp.c.ymd, tmp.c.hh).distinct()))
    h, loc = tables.temperature_hourly, tables.location
    with_limits = select(loc.c.loc_id).where(loc.c.active.is_(True))
    # A row this write inserted or changed carries its updated_at; an unchanged one not.
    touched = (h.c.updated_at == literal(now, UtcDateTime)).label("touched")
    on = and_(*(h.c[k] == tmp.c[k] for k in HOURLY_KEY))
    rows = []
    for r in conn.execute(select(tmp, touched).select_from(tmp.join(h, on))
                          .where(tmp.c.loc_id.in_(with_limits))).mappings():
        row = {c: r[c] for c in COLUMNS}
        if r["touched"]:
            stats.changed.add((row["loc_id"], row["ymd"], row["hh"]))
        rows.append(row)
    return rows


def _apply(conn: Connection, tables: Tables, tmp: Table, window: Window, raw_count: int,
           now: datetime, stats: WriteStats, bounds: tuple[datetime, datetime],
           ) -> list[dict[str, Any]]:
    """Upsert the staged groups, validate them, and count them into ``stats``; then the
    window's days and quality row (:mod:`.window_quality`), in the same transaction."""
    upserted = _upsert_from(conn, tables.temperature_hourly, tmp, now)
    groups, stale = _check(conn, tables, tmp, window, raw_count)
    locations = conn.execute(select(tmp.c.loc_id).distinct()).scalars().all()
    stats.quality.append(finish_window(conn, tables, window, bounds, raw_count, groups,
                                       locations, stats.run_id, now))
    stats.groups += groups
    stats.upserted += upserted
    stats.unchanged += groups - upserted
    stats.raw_rows += raw_count
    stats.stale += stale
    return _rows_back(conn, tables, tmp, now, stats)


def _in_database_window(conn: Connection, tables: Tables, window: Window, tz: ZoneInfo,
                        now: datetime, stats: WriteStats) -> list[dict[str, Any]]:
    start, end = window.bounds(tz)
    segments = offset_segments(start, end, tz)
    tmp = _temp_table()
    tmp.create(conn)
    raw_count = conn.execute(raw_count_select(tables, start, end, window.loc_ids)).scalar_one()
    tune_group_by(conn)
    conn.execute(insert(tmp).from_select(
        list(COLUMNS), labelled_select(tables, segments, start, end, window.loc_ids)))
    _analyze(conn, tmp)
    rows = _apply(conn, tables, tmp, window, int(raw_count), now, stats, (start, end))
    tmp.drop(conn)
    return rows


def _staged_window(source: Connection, conn: Connection, tables: Tables, window: Window,
                   tz: ZoneInfo, now: datetime, stats: WriteStats,
                   ready: Callable[[], None]) -> list[dict[str, Any]]:
    start, end = window.bounds(tz)
    tmp = _temp_table()
    tmp.create(conn)
    raw_count = source.execute(
        raw_count_select(tables, start, end, window.loc_ids)).scalar_one()
    if can_pipe(source, conn):
        tune_group_by(source)
        segments = offset_segments(start, end, tz)
        copy_select(source, labelled_select(tables, segments, start, end, window.loc_ids),
                    conn, tmp, COLUMNS, ready)
    else:
        ready()
        for batch in stream_groups(source, tables, window, tz, BATCH_SIZE):
            bulk_insert(conn, tmp, COLUMNS, batch)
    _analyze(conn, tmp)
    rows = _apply(conn, tables, tmp, window, int(raw_count), now, stats, (start, end))
    tmp.drop(conn)
    return rows


def _analyze(conn: Connection, tmp: Table) -> None:
    """Statistics for the loaded temporary table (PostgreSQL has none for it otherwise):
    the checks join it with ``temperature_hourly``, and a planner that knows how few rows
    it holds looks them up by key instead of scanning an hourly table of years."""
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"ANALYZE {conn.dialect.identifier_preparer.format_table(tmp)}"))


def _active_loc_ids(conn: Connection, tables: Tables) -> set[str]:
    loc = tables.location
    return set(conn.execute(select(loc.c.loc_id).where(loc.c.active.is_(True))).scalars())


@contextmanager
def target_transaction(target: Engine, path: str) -> Iterator[Connection]:
    """A transaction on the target for :func:`write_windows`.

    On the in-database path the raw count and the GROUP BY run in it too, so on
    PostgreSQL it is REPEATABLE READ: both see one snapshot.
    """
    with target.connect() as conn:
        if path == IN_DATABASE and conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def _once(fn: Callable[[], None] | None) -> Callable[[], None]:
    done: list[bool] = []

    def call() -> None:
        if fn is not None and not done:
            done.append(True)
            fn()
    return call


def write_windows(source: Engine, conn: Connection, tables: Tables, windows: Sequence[Window],
                  tz: ZoneInfo, now: datetime, stats: WriteStats,
                  ready: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Aggregate ``windows`` from ``source`` and write them in the target transaction ``conn``.

    The path is ``stats.path`` (from :func:`choose_path`; open ``conn`` with
    :func:`target_transaction`). Raises :class:`ValidationError` on a mismatch: the
    caller's transaction then rolls back. ``ready`` is called once, before the first
    write to the target: on the piped path (:func:`overlaps_source`) only when the
    source's first GROUP BY has its groups, so a caller can wait for its turn to write
    while the source aggregates; on the others before anything runs.

    Returns:
        The hourly rows of active locations (the ones thresholds apply to).
    """
    rows: list[dict[str, Any]] = []
    ready = _once(ready)
    if stats.path != STAGED:
        ready()
    if stats.path == IN_DATABASE:
        for window in windows:
            rows += _in_database_window(conn, tables, window, tz, now, stats)
        return rows
    with source_snapshot(source) as src:
        if stats.path == STAGED:
            for window in windows:
                rows += _staged_window(src, conn, tables, window, tz, now, stats, ready)
            return rows
        results = [aggregate_window(src, tables, window, tz) for window in windows]
    active = _active_loc_ids(conn, tables)
    for result in results:
        write_window(conn, tables, result, now, stats)
        rows += [r for r in result.rows if r["loc_id"] in active]
    return rows


def overlaps_source(source: Engine, target: Engine) -> bool:
    """Whether a window's GROUP BY runs on the source before its writer needs its turn
    on the target (the piped ``staged`` path: PostgreSQL to PostgreSQL through psycopg2),
    so one window can aggregate while another writes."""
    return choose_path(source, target) == STAGED and can_pipe(source, target)


def aggregate_and_write(source: Engine, target: Engine, tables: Tables, window: Window,
                        tz: ZoneInfo, now: datetime, run_id: str | None = None,
                        turn: Callable[[], AbstractContextManager[Any]] | None = None,
                        ) -> tuple[WriteStats, list[dict[str, Any]]]:
    """One window end to end in its own target transaction (a backfill chunk).

    ``turn`` (e.g. a concurrency slot) is entered when the window is ready to be written
    (see :func:`write_windows`) and left after the commit.

    Returns:
        The write statistics (``path`` says which path was taken) and the window's
        hourly rows of active locations.
    """
    stats = WriteStats(path=choose_path(source, target), run_id=run_id)
    with ExitStack() as held:
        def take_turn() -> None:
            if turn is not None:
                held.enter_context(turn())
        with target_transaction(target, stats.path) as conn:
            rows = write_windows(source, conn, tables, [window], tz, now, stats, take_turn)
    return stats, rows
