"""The trailing re-check: which already extracted days changed in the source since.

Store-and-forward delivers readings late: a gateway that lost its database connection
sends hours or days of rows when it is back, into days the extraction already wrote.
Each run compares, for the ``recheck_days`` days before its window, the rows per
``(tag, day)`` in the source (a GROUP BY in the database) with the rows in the lake
(Parquet footers) and rewrites only the days where one differs.
"""

from dataclasses import dataclass, replace
from datetime import date, timedelta

from shopfloor.historian.plan import MonthSlice, epoch_ms
from shopfloor.historian.tags import partition_key

DAY_MS = 86_400_000


@dataclass(frozen=True)
class DayCheck:
    """One re-checked day: rows in the source and in the lake, the tags that differ."""

    date: str  # YYYY-MM-DD
    source_rows: int
    lake_rows: int
    changed_tags: int

    @property
    def changed(self) -> bool:
        return self.changed_tags > 0


def recheck_window(start: date, days: int) -> tuple[date, date] | None:
    """The ``days`` days before ``start`` (both ends included), or ``None`` for 0."""
    if days <= 0:
        return None
    return start - timedelta(days=days), start - timedelta(days=1)


def day_of(epoch_day: int) -> str:
    """``YYYY-MM-DD`` of a day number since the epoch (``t_stamp // 86400000``)."""
    return (date(1970, 1, 1) + timedelta(days=epoch_day)).isoformat()


def compare_days(dates: list[str], source: dict[tuple[str, int], int],
                 lake: dict[tuple[str, str], int]) -> list[DayCheck]:
    """Compare per ``(tag, day)``: ``source`` by ``(tagpath, epoch day)``, ``lake`` by
    ``(tag key, date)``; one :class:`DayCheck` per date of ``dates``, in order."""
    src: dict[tuple[str, str], int] = {}
    for (tagpath, day), n in source.items():
        key = (partition_key(tagpath), day_of(day))
        src[key] = src.get(key, 0) + n
    out = []
    for d in dates:
        keys = {k for k in src if k[1] == d} | {k for k in lake if k[1] == d}
        changed = sum(src.get(k, 0) != lake.get(k, 0) for k in keys)
        out.append(DayCheck(d, sum(src.get(k, 0) for k in keys),
                            sum(lake.get(k, 0) for k in keys), changed))
    return out


def day_slices(slices: list[MonthSlice], days: list[str]) -> list[MonthSlice]:
    """One slice per day of ``days``, cut from the planned ``slices`` with their reads
    clipped to the day; labelled with the day (``YYYY-MM-DD``)."""
    out = []
    for d in days:
        lo = epoch_ms(date.fromisoformat(d))
        hi = lo + DAY_MS
        for s in slices:
            if s.start_ms >= hi or s.end_ms <= lo:
                continue
            lo_, hi_ = max(lo, s.start_ms), min(hi, s.end_ms)
            reads = tuple(replace(r, start_ms=max(r.start_ms, lo_), end_ms=min(r.end_ms, hi_))
                          for r in s.reads if r.start_ms < hi_ and r.end_ms > lo_)
            if s.reads and not reads:
                continue  # no partition holds this day: nothing to read it from
            out.append(replace(s, month=d, start_ms=lo_, end_ms=hi_, reads=reads))
    return out
