"""The plan of an incremental hourly run: closed hours only, catch-up without holes.

An incremental run stands for a *logical time* ``now`` (a scheduled run: the time it was
scheduled for, not the time it started). It writes:

- every closed local hour from the last one a previous incremental run wrote (the
  *closed-through* watermark, an instant) up to the last hour closed at ``now``, at most
  ``max_catchup_hours`` of them, so a run after an outage leaves no hole; and
- the hours that received rows since the late-data watermark (``ingested_at``, or on a raw
  table without it ``capture_dt`` with a lateness allowance: :mod:`.late`),

but never the hour still open at ``now`` nor a later one: their rows are written by the
run whose logical time is past them (the closed-through range reaches them even though
the late-data watermark has moved on). A threshold alert therefore never sees half an hour.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from shopfloor.aggregation.hours import hour_start, local_hour_index, ymd_hh
from shopfloor.aggregation.windows import Window, merge_hours

# A week: an outage longer than that is a backfill's job (hourly-backfill), not one run's.
DEFAULT_MAX_CATCHUP_HOURS = 168


@dataclass(frozen=True)
class IncrementalPlan:
    """What one incremental run aggregates and which watermarks it then moves."""

    windows: list[Window]
    closed: Window
    """The closed hours covered whether or not they have rows (the catch-up range)."""
    skipped: Window | None
    """Closed hours older than the catch-up limit: not written, left for a backfill."""
    deferred: int
    """Late (location, hour) pairs in the open hour or later: a later run's."""
    closed_through: datetime
    """The new closed-through watermark: the start of the open hour (UTC)."""


def plan_incremental(now: datetime, tz: ZoneInfo, late: Iterable[tuple[str, int]] = (),
                     closed_through: datetime | None = None,
                     max_catchup_hours: int = DEFAULT_MAX_CATCHUP_HOURS) -> IncrementalPlan:
    """The windows of an incremental run at logical time ``now`` (aware).

    Args:
        now: the run's logical time.
        tz: zone of the hour buckets.
        late: ``(loc_id, local hour index)`` pairs that received rows since the last run.
        closed_through: the stored closed-through watermark (None: never set, only the
            last closed hour is due).
        max_catchup_hours: at most this many closed hours (the newest) are covered.
    """
    open_hour = local_hour_index(now, tz)
    first = open_hour - 1
    if closed_through is not None:
        # Never less than the last closed hour: a run older than the watermark (a late
        # retry) still re-aggregates its own hour, which is harmless.
        first = min(local_hour_index(closed_through, tz), first)
    skipped = None
    if open_hour - first > max_catchup_hours:
        skipped = Window(first, open_hour - max_catchup_hours)
        first = skipped.last
    closed = Window(first, open_hour)
    pairs = list(late)
    due = [(loc, i) for loc, i in pairs if i < open_hour]
    windows = merge_hours([*((None, i) for i in range(closed.first, closed.last)), *due])
    return IncrementalPlan(windows, closed, skipped, len(pairs) - len(due),
                           hour_start(open_hour, tz))


def later(stored: str | None, value: datetime) -> bool:
    """True if ``value`` moves a watermark stored as ISO text forward (never backward)."""
    return stored is None or datetime.fromisoformat(stored) < value


def hours_without_rows(window: Window, rows: Iterable[Mapping[str, Any]],
                       tz: ZoneInfo) -> list[int]:
    """Hours of ``window`` for which no location has an hourly row.

    A local hour that does not exist (skipped by a DST spring-forward) is not reported.
    """
    seen = {(r["ymd"], r["hh"]) for r in rows}
    return [i for i in range(window.first, window.last)
            if ymd_hh(i) not in seen and hour_start(i, tz) < hour_start(i + 1, tz)]


def hour_label(index: int) -> str:
    """``YYYYMMDD HH`` of a local hour index, for messages."""
    return " ".join(ymd_hh(index))
