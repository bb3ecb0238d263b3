"""Local-hour arithmetic: which hour of the clock in a time zone an instant falls in.

An hour bucket is identified by its *local hour index*: the number of whole hours
from 1970-01-01 00:00 to the instant's wall-clock time in the zone. Wall-clock time
never goes back by more than the hour it is in (a DST fall-back repeats 01:00-02:00),
so the index never decreases as time goes on; both 01:00 hours of a fall-back get the
same index and therefore land in one bucket, as ``(ymd, hh)`` can hold only one row.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shopfloor.errors import UserError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_SEARCH = 16 * 3600  # no zone is more than 14 hours from UTC


@dataclass(frozen=True)
class OffsetSegment:
    """A UTC interval ``[start, end)`` over which the zone's UTC offset is constant."""

    start: datetime
    end: datetime
    offset_seconds: int


def resolve_timezone(name: str) -> ZoneInfo:
    """The zone called ``name`` (IANA, e.g. ``Asia/Makassar``); unknown names raise clearly."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise UserError(
            f"unknown time zone {name!r}: use an IANA name such as 'UTC' or 'Asia/Jakarta'"
        ) from None


def as_utc(value: datetime, tz: ZoneInfo) -> datetime:
    """An aware UTC datetime; a naive ``value`` is wall-clock time in ``tz``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(UTC)


def offset_seconds(instant: datetime, tz: ZoneInfo) -> int:
    """The zone's UTC offset at ``instant`` in whole seconds."""
    return int(instant.astimezone(tz).utcoffset().total_seconds())


def _epoch_seconds(instant: datetime) -> int:
    return int((instant - EPOCH).total_seconds() // 1)


def local_hour_index(instant: datetime, tz: ZoneInfo) -> int:
    """The local hour index of ``instant`` (aware) in ``tz``."""
    return (_epoch_seconds(instant) + offset_seconds(instant, tz)) // 3600


def hour_start(index: int, tz: ZoneInfo) -> datetime:
    """The first UTC instant (whole second) whose local hour index is ``index`` or more."""
    lo, hi = index * 3600 - _SEARCH, index * 3600 + _SEARCH
    while lo < hi:  # the index is non-decreasing in time: bisect on seconds
        mid = (lo + hi) // 2
        if local_hour_index(EPOCH + timedelta(seconds=mid), tz) >= index:
            hi = mid
        else:
            lo = mid + 1
    return EPOCH + timedelta(seconds=lo)


def ymd_hh(index: int) -> tuple[str, str]:
    """``('YYYYMMDD', 'HH')`` of a local hour index."""
    wall = _EPOCH_NAIVE + timedelta(hours=index)
    return wall.strftime("%Y%m%d"), wall.strftime("%H")


def index_of_ymd_hh(ymd: str, hh: str) -> int:
    """The local hour index of ``('YYYYMMDD', 'HH')`` (inverse of :func:`ymd_hh`)."""
    wall = datetime.strptime(ymd + hh, "%Y%m%d%H")
    return int((wall - _EPOCH_NAIVE).total_seconds()) // 3600


def _transition(lo: datetime, hi: datetime, tz: ZoneInfo) -> datetime:
    """The first instant in ``(lo, hi]`` with ``hi``'s offset (one change in between)."""
    target = offset_seconds(hi, tz)
    a, b = _epoch_seconds(lo), _epoch_seconds(hi)
    while b - a > 1:
        mid = (a + b) // 2
        if offset_seconds(EPOCH + timedelta(seconds=mid), tz) == target:
            b = mid
        else:
            a = mid
    return EPOCH + timedelta(seconds=b)


def offset_segments(start: datetime, end: datetime, tz: ZoneInfo) -> list[OffsetSegment]:
    """Split ``[start, end)`` (aware UTC) at the zone's UTC-offset changes.

    Offsets change at most a few times a year and never twice within an hour, so an
    hourly scan finds each change and a bisection pins it to the second.
    """
    last = end - timedelta(microseconds=1)
    segments: list[OffsetSegment] = []
    seg_start, current = start, offset_seconds(start, tz)
    probe = start
    while probe < last:
        nxt = min(probe + timedelta(hours=1), last)
        if offset_seconds(nxt, tz) != current:
            change = _transition(probe, nxt, tz)
            segments.append(OffsetSegment(seg_start, change, current))
            seg_start, current = change, offset_seconds(change, tz)
        probe = nxt
    segments.append(OffsetSegment(seg_start, end, current))
    return segments
