"""The windows a run aggregates, as ranges of local hour indexes (see :mod:`.hours`).

:func:`plan_windows` is the plan of one ``hourly_aggregation`` run; the backfill cuts a
:func:`date_range_window` into :func:`chunks`.

A window never splits a local hour, so the two 01:00 hours of a DST fall-back are
always aggregated together, whatever the chunking.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from shopfloor.aggregation.hours import as_utc, hour_start, local_hour_index, ymd_hh
from shopfloor.errors import UserError

# Above this many locations an IN list costs more than it saves (and SQL Server caps
# a statement at 2,100 parameters): the window then covers every location.
MAX_LOC_FILTER = 500


@dataclass(frozen=True)
class Window:
    """Local hours ``[first, last)`` (hour indexes), optionally only some locations."""

    first: int
    last: int
    loc_ids: tuple[str, ...] | None = None

    def bounds(self, tz: ZoneInfo) -> tuple[datetime, datetime]:
        """The window as aware UTC instants ``[start, end)``."""
        return hour_start(self.first, tz), hour_start(self.last, tz)

    @property
    def hours(self) -> int:
        return self.last - self.first

    def label(self) -> str:
        """``YYYYMMDD HH - YYYYMMDD HH`` (local, end exclusive) for logs and artifacts."""
        (y0, h0), (y1, h1) = ymd_hh(self.first), ymd_hh(self.last)
        where = f" ({len(self.loc_ids)} locations)" if self.loc_ids is not None else ""
        return f"{y0} {h0}:00 - {y1} {h1}:00{where}"


def explicit_window(start: datetime, end: datetime, tz: ZoneInfo) -> Window:
    """The whole local hours covering ``[start, end)``; naive datetimes are local to ``tz``.

    Raises:
        ShopfloorError: if ``end`` is not after ``start``.
    """
    start_utc, end_utc = as_utc(start, tz), as_utc(end, tz)
    if end_utc <= start_utc:
        raise UserError(f"end ({end.isoformat()}) must be after start ({start.isoformat()})")
    first = local_hour_index(start_utc, tz)
    last = local_hour_index(end_utc, tz)
    if hour_start(last, tz) < end_utc:
        last += 1  # a partial last hour is aggregated whole: never upsert half an hour
    return Window(first, last)


def date_range_window(start_date: date, end_date: date, tz: ZoneInfo) -> Window:
    """Local days ``start_date`` to ``end_date``, both included."""
    if end_date < start_date:
        raise UserError(
            f"end_date ({end_date.isoformat()}) must not be before start_date "
            f"({start_date.isoformat()})"
        )
    start = datetime.combine(start_date, datetime.min.time())
    end = datetime.combine(end_date + timedelta(days=1), datetime.min.time())
    return explicit_window(start, end, tz)


def last_closed_hour(now: datetime, tz: ZoneInfo) -> Window:
    """The last local hour that has ended at ``now`` (aware)."""
    current = local_hour_index(now, tz)
    return Window(current - 1, current)


# A backfill chunk: a week of local days. Each chunk pays fixed costs (a Prefect task
# run, a warehouse slot taken and given back, a temporary table, the checks: about 0.15 s
# against a local Prefect server), and a deployed backfill runs one chunk at a time under
# the 1-slot warehouse limit; day chunks spent half their time on those costs
# (benchmarks/README.md). A week of 200 locations holds the slot for about a second.
DEFAULT_CHUNK_HOURS = 7 * 24


def chunks(window: Window, chunk_hours: int) -> list[Window]:
    """``window`` cut into consecutive windows of at most ``chunk_hours`` hours."""
    if chunk_hours < 1:
        raise UserError(f"chunk_hours must be at least 1, got {chunk_hours}")
    return [
        Window(i, min(i + chunk_hours, window.last), window.loc_ids)
        for i in range(window.first, window.last, chunk_hours)
    ]


def chunks_share_days(chunk_hours: int) -> bool:
    """Whether chunks of ``chunk_hours`` cut local days (a backfill's range starts at a
    local midnight and a local day is 24 local-hour indexes, DST days included): such
    chunks write the same ``temperature_daily`` rows and must not run at the same time."""
    return chunk_hours % 24 != 0


@dataclass(frozen=True)
class ChunkPlan:
    """How many backfill chunks run at once, whether they queue for their turn to write
    (one aggregates on the source while another writes), and why, for the log."""

    running: int
    queue: bool
    why: str


def plan_chunk_concurrency(max_concurrency: int, slots: int | None, overlaps: bool,
                           chunk_hours: int, target_dialect: str,
                           limit_name: str) -> ChunkPlan:
    """The backfill's concurrency, from what the run asked and what the warehouse allows.

    - A 1-slot warehouse limit with a source that aggregates before its write needs the
      target (``overlaps``): two chunks, queued (one writes, one aggregates).
    - Otherwise no more chunks than the limit's ``slots`` (more would only wait for a
      slot in Prefect's randomised retry loop, leaving it idle between turns).
    - One chunk when chunks share local days (:func:`chunks_share_days`: both would
      rewrite the day's daily rows) or the target is SQLite (one writer at a time; a
      second one that has read already gets "database is locked" at once).
    """
    plan = ChunkPlan(max_concurrency, False, "")
    if slots == 1 and overlaps and max_concurrency > 1:
        plan = ChunkPlan(2, True, f" (the {limit_name} limit has 1 slot: one writes, "
                                  "one aggregates)")
    elif slots and slots < max_concurrency:
        plan = ChunkPlan(slots, False, f" (the {limit_name} limit has {slots} slot(s))")
    if plan.running > 1 and chunks_share_days(chunk_hours):
        plan = ChunkPlan(1, False, f" ({chunk_hours}-hour chunks share local days)")
    if plan.running > 1 and target_dialect == "sqlite":
        plan = ChunkPlan(1, False, " (a SQLite target takes one writer at a time)")
    return plan


def merge_hours(pairs: Iterable[tuple[str | None, int]]) -> list[Window]:
    """Windows covering the given ``(loc_id, hour index)`` pairs, one per run of hours.

    Consecutive hours form one window over the union of their locations, so a batch of
    late readings costs one GROUP BY per run rather than one per hour. ``loc_id`` None
    means every location for that hour.
    """
    locs_by_hour: dict[int, set[str | None]] = {}
    for loc_id, index in pairs:
        locs_by_hour.setdefault(index, set()).add(loc_id)
    windows: list[Window] = []
    run: list[int] = []
    for index in sorted(locs_by_hour):
        if run and index != run[-1] + 1:
            windows.append(_run_window(run, locs_by_hour))
            run = []
        run.append(index)
    if run:
        windows.append(_run_window(run, locs_by_hour))
    return windows


def _run_window(run: list[int], locs_by_hour: dict[int, set[str | None]]) -> Window:
    locs: set[str | None] = set().union(*(locs_by_hour[i] for i in run))
    if None in locs or len(locs) > MAX_LOC_FILTER:
        return Window(run[0], run[-1] + 1)
    return Window(run[0], run[-1] + 1, tuple(sorted(locs)))  # type: ignore[arg-type]


def plan_windows(start: datetime | None, end: datetime | None, tz: ZoneInfo, now: datetime,
                 late: Iterable[tuple[str, int]] = ()) -> list[Window]:
    """The windows of one aggregation run.

    With ``start`` and ``end``: the one explicit window (whole local hours covering
    ``[start, end)``, naive values local to ``tz``). With neither: an incremental run,
    the last local hour closed at ``now`` (aware) plus the ``(loc_id, hour index)``
    pairs of ``late`` (hours that received readings since the last run) before the hour
    still open at ``now``, merged into one window per run of consecutive hours (the
    flow plans with :func:`~shopfloor.aggregation.incremental.plan_incremental`, which
    adds the catch-up of closed hours).

    Raises:
        ShopfloorError: if only one of ``start`` and ``end`` is given, or ``end`` is not
            after ``start``.
    """
    if (start is None) != (end is None):
        raise UserError("give both start and end, or neither (incremental run)")
    if start is not None and end is not None:
        return [explicit_window(start, end, tz)]
    closed = last_closed_hour(now, tz)
    return merge_hours([(None, closed.first), *((loc, i) for loc, i in late if i < closed.last)])
