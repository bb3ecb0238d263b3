"""Hourly rows laid on a grid of local hours: one row per (location, measure), one column
per local hour index (shopfloor/aggregation/hours.py), NaN where nothing was stored.

Columns follow the local wall clock, so column ``t - 24`` is the same hour of the day
before, also across a DST change. A local hour that does not exist in the zone (the
spring-forward hour) is a column marked as not existing: it is never expected and never
compared with; both hours of a fall-back share one column, as they share one row.
"""

from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

MEASURES = ("temperature", "humidity", "pcv_temperature")
_HOUR = np.timedelta64(1, "h")
_EPOCH = np.datetime64("1970-01-01T00", "h")
# UTC offsets are whole quarters of an hour (+05:45 Nepal), so a local hour starts on one.
_STEP = pd.Timedelta(minutes=15)


def local_indices(ymd: pd.Series, hh: pd.Series) -> np.ndarray:
    """Local hour indices of ``('YYYYMMDD', 'HH')`` columns (vectorised
    :func:`~shopfloor.aggregation.hours.index_of_ymd_hh`)."""
    wall = pd.to_datetime(ymd.astype(str) + hh.astype(str), format="%Y%m%d%H")
    return ((wall.to_numpy().astype("datetime64[h]") - _EPOCH) // _HOUR).astype(np.int64)


def local_labels(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``ymd`` and ``hh`` strings of local hour indices (inverse of :func:`local_indices`)."""
    wall = pd.DatetimeIndex(_EPOCH + indices.astype("timedelta64[h]"))
    return wall.strftime("%Y%m%d").to_numpy(), wall.strftime("%H").to_numpy()


def hour_starts(first: int, last: int, tz: ZoneInfo) -> tuple[np.ndarray, np.ndarray]:
    """For local hour indices ``first..last``: whether each exists in ``tz``, and its first
    UTC instant (vectorised :func:`~shopfloor.aggregation.hours.hour_start`; NaT where the
    hour does not exist)."""
    lo = pd.Timestamp(_EPOCH + np.timedelta64(first - 16, "h"), tz="UTC")
    hi = pd.Timestamp(_EPOCH + np.timedelta64(last + 17, "h"), tz="UTC")
    instants = pd.date_range(lo, hi, freq=_STEP)
    wall = instants.tz_convert(tz).tz_localize(None).to_numpy()
    index = (wall.astype("datetime64[h]") - _EPOCH) // _HOUR
    # The index never decreases in time: the first instant of each index is its start.
    keep = np.r_[True, index[1:] != index[:-1]]
    index, starts = index[keep], instants[keep]
    pos = index - first
    inside = (pos >= 0) & (pos <= last - first)
    exists = np.zeros(last - first + 1, dtype=bool)
    exists[pos[inside]] = True
    start = np.full(last - first + 1, np.datetime64("NaT"), dtype="datetime64[ns]")
    start[pos[inside]] = starts[inside].tz_localize(None).to_numpy()
    return exists, start


@dataclass
class HourGrid:
    """Hourly rows of a set of locations over local hours ``first..first+T-1``.

    ``avg`` holds one row per series (``series[i]`` is its ``(loc_id, measure)``), in
    measure-major order: series ``m * len(locs) + l``.
    """

    first: int
    locs: list[str]
    exists: np.ndarray  # (T,) the local hour exists in the zone
    start: np.ndarray  # (T,) its first UTC instant, naive datetime64
    present: np.ndarray  # (L, T) a row is stored
    count: np.ndarray  # (L, T) sample_count, 0 where no row
    avg: np.ndarray  # (S, T) hourly averages, NaN where none
    measures: tuple[str, ...] = MEASURES  # the frame's ``<measure>_avg`` columns

    @property
    def series(self) -> list[tuple[str, str]]:
        return [(loc, m) for m in self.measures for loc in self.locs]

    @property
    def hours(self) -> int:
        return self.exists.size

    def hour_of_day(self) -> np.ndarray:
        """The local hour of the day (0-23) of every column."""
        return (self.first + np.arange(self.hours)) % 24


def build_grid(frame: pd.DataFrame, first: int, last: int, tz: ZoneInfo,
               measures: tuple[str, ...] = MEASURES) -> HourGrid:
    """Lay hourly rows (``loc_id``, ``ymd``, ``hh``, ``<measure>_avg``, ``sample_count``)
    on the grid of local hours ``first..last``; rows outside are ignored. ``measures``
    are the seed's three, or ``("value",)`` for tags (a tag is a ``loc_id`` of its own)."""
    exists, start = hour_starts(first, last, tz)
    n = last - first + 1
    idx = local_indices(frame["ymd"], frame["hh"]) - first if len(frame) else np.array([], int)
    rows = frame[(idx >= 0) & (idx < n)]
    idx = idx[(idx >= 0) & (idx < n)]
    locs = sorted(rows["loc_id"].unique().tolist())
    li = pd.Categorical(rows["loc_id"], categories=locs).codes.astype(np.int64)
    present = np.zeros((len(locs), n), dtype=bool)
    present[li, idx] = True
    count = np.zeros((len(locs), n), dtype=np.int64)
    count[li, idx] = rows["sample_count"].fillna(0).to_numpy(dtype=np.int64)
    avg = np.full((len(measures) * len(locs), n), np.nan)
    for m, measure in enumerate(measures):
        values = pd.to_numeric(rows[f"{measure}_avg"], errors="coerce").to_numpy(dtype=float)
        avg[m * len(locs) + li, idx] = values
    return HourGrid(first, locs, exists, start, present, count, avg, measures)
