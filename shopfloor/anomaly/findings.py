"""Findings of the detectors, and :func:`detect`: every finding of a window of hours."""

import json
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from shopfloor.anomaly.detectors import (
    flatline_runs,
    gap_hours,
    hourly_diffs,
    recent_level,
    runs,
    same_hour_robust,
    spike_flags,
)
from shopfloor.anomaly.grid import MEASURES, HourGrid, build_grid, local_labels
from shopfloor.errors import UserError

KINDS = ("deviation", "spike", "flatline", "gap")
WHOLE_LOCATION = "*"  # the measure of a gap of a whole location (no row at all)


@dataclass(frozen=True)
class DetectorParams:
    """Settings of the four detectors (docs/anomalies.md); the defaults are those the
    benchmark (benchmarks/bench_anomaly.py) measured."""

    history_days: int = 28  # trailing window of the same local hour
    min_history: int = 7  # days with a value needed before a cell is judged
    deviation_threshold: float = 3.5  # |robust z| of the value
    mad_floor: float = 0.05  # lower bound of a MAD (units of the measure)
    level_hours: int = 168  # deviation from the median of the hours before (0: raw value)
    pool_mad: bool = True  # scale: the median of the day's 24 same-hour MADs
    spike_threshold: float = 5.0  # |robust z| of the hour-to-hour change
    spike_min_change: float = 0.5  # and the change at least this far from the usual one
    flatline_hours: int = 6  # consecutive hours without change
    flatline_epsilon: float = 1e-6  # "no change"
    flatline_min_usual_change: float = 1e-3  # the series' median hourly change
    min_samples: int = 1  # an hour with fewer samples is a gap

    def check(self) -> "DetectorParams":
        """Refuse settings that cannot work, with one line naming the setting."""
        if not 1 <= self.min_history <= self.history_days:
            raise UserError("min_history must be between 1 and history_days")
        for name in ("deviation_threshold", "spike_threshold", "mad_floor",
                     "flatline_epsilon"):
            if not getattr(self, name) > 0:
                raise UserError(f"{name} must be above 0")
        if self.flatline_hours < 2:
            raise UserError("flatline_hours must be at least 2")
        return self


@dataclass(frozen=True)
class Finding:
    """One anomaly: a row of the ``anomaly`` table."""

    kind: str
    loc_id: str
    measure: str
    hour_start: datetime  # aware UTC: the start of the (first) hour
    hours: int
    score: float
    detail: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> tuple[str, str, str, datetime]:
        """The unique key ``uq_anomaly_finding``."""
        return (self.kind, self.loc_id, self.measure, self.hour_start)

    def row(self, run_id: str | None, detected_at: datetime) -> dict[str, Any]:
        """The finding as a row of the ``anomaly`` table."""
        return {"kind": self.kind, "loc_id": self.loc_id, "measure": self.measure,
                "hour_start": self.hour_start, "hours": self.hours,
                "score": self.score, "detail": json.dumps(self.detail, sort_keys=True),
                "run_id": run_id, "detected_at": detected_at}


def _utc(value: np.datetime64) -> datetime:
    return pd.Timestamp(value).to_pydatetime().replace(tzinfo=UTC)


def _r(value: float) -> float | None:
    return None if value is None or np.isnan(value) else round(float(value), 6)


def _plain(value: Any) -> Any:
    """A JSON-ready value: numpy numbers as Python ones, NaN as None."""
    if isinstance(value, float | np.floating):
        return _r(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


class _Builder:
    """Makes findings from grid cells, with local labels in their detail."""

    def __init__(self, grid: HourGrid, timezone: str):
        self.grid, self.timezone = grid, timezone
        self.ymd, self.hh = local_labels(grid.first + np.arange(grid.hours))

    def make(self, kind: str, loc_id: str, measure: str, col: int, hours: int, score: float,
             **detail: Any) -> Finding:
        detail = {k: _plain(v) for k, v in detail.items()}
        detail.update(ymd=str(self.ymd[col]), hh=str(self.hh[col]), timezone=self.timezone)
        return Finding(kind, loc_id, measure, _utc(self.grid.start[col]), int(hours),
                       float(round(score, 6)), detail)


def _deviations(grid: HourGrid, p: DetectorParams, window: np.ndarray, b: _Builder):
    # Compared as the distance from the day's level, so a seasonal swing or a slow drift
    # (the level moves, the daily shape stays) does not read as a deviation.
    level = (recent_level(grid.avg, p.level_hours) if p.level_hours
             else np.zeros_like(grid.avg))
    robust = same_hour_robust(grid.avg - level, grid.hour_of_day(), p.history_days,
                              p.min_history, p.mad_floor, p.pool_mad)
    series = grid.series
    rows, cols = np.nonzero((np.abs(robust.score) > p.deviation_threshold) & window)
    return [b.make("deviation", *series[r], c, 1, robust.score[r, c],
                   value=grid.avg[r, c], level=level[r, c], median=robust.median[r, c],
                   mad=robust.mad[r, c], threshold=p.deviation_threshold,
                   mad_floor=p.mad_floor)
            for r, c in zip(rows, cols, strict=True)]


def _spikes(grid: HourGrid, p: DetectorParams, window: np.ndarray, b: _Builder):
    diffs = hourly_diffs(grid.avg, grid.exists)
    robust = same_hour_robust(diffs, grid.hour_of_day(), p.history_days, p.min_history,
                              p.mad_floor)
    flagged = spike_flags(robust, diffs, p.spike_threshold, p.spike_min_change)
    series = grid.series
    rows, cols = np.nonzero(flagged & window)
    return [b.make("spike", *series[r], c, 1, robust.score[r, c], value=grid.avg[r, c],
                   change=diffs[r, c], usual_change=robust.median[r, c],
                   mad=robust.mad[r, c], threshold=p.spike_threshold,
                   min_change=p.spike_min_change)
            for r, c in zip(rows, cols, strict=True)]


def _overlaps(first: np.ndarray, hours: np.ndarray, window: np.ndarray) -> np.ndarray:
    lo, hi = np.flatnonzero(window)[[0, -1]]
    return (first <= hi) & (first + hours - 1 >= lo)


def _flatlines(grid: HourGrid, p: DetectorParams, window: np.ndarray, b: _Builder):
    found, usual = flatline_runs(grid.avg, grid.exists, p.flatline_hours, p.flatline_epsilon,
                                 p.flatline_min_usual_change)
    keep = _overlaps(found.start, found.length, window)
    series = grid.series
    return [b.make("flatline", *series[r], c, n, float(n), value=grid.avg[r, c],
                   usual_change=usual[r], epsilon=p.flatline_epsilon,
                   min_hours=p.flatline_hours)
            for r, c, n in zip(found.row[keep], found.start[keep], found.length[keep],
                               strict=True)]


def _gaps(grid: HourGrid, p: DetectorParams, window: np.ndarray, b: _Builder):
    ok = grid.present & (grid.count >= p.min_samples)
    through = int(np.flatnonzero(ok.any(axis=0) & (np.arange(grid.hours) <= np.flatnonzero(
        window)[-1]))[-1]) if ok.any() else -1
    missing = gap_hours(ok, grid.exists, through)
    # Skipped (non-existent) hours inside a gap do not break it into two.
    bridged = missing | (~grid.exists[None, :] & np.roll(missing, 1, axis=1))
    found = runs(bridged)
    keep = _overlaps(found.start, found.length, window)
    out = []
    for r, c, n in zip(found.row[keep], found.start[keep], found.length[keep], strict=True):
        hours = int(missing[r, c:c + n].sum())  # real hours, not the skipped one
        out.append(b.make("gap", grid.locs[r], WHOLE_LOCATION, c, hours, float(hours),
                          min_samples=p.min_samples, samples=int(grid.count[r, c:c + n].sum()),
                          reason="no row" if not grid.present[r, c:c + n].any()
                          else "few samples"))
    # A measure without a value in an hour whose row is there, in a series that usually
    # has one: a sensor of the location is silent while the others report.
    nl = len(grid.locs)
    has = ~np.isnan(grid.avg)
    rows_ok = np.tile(ok, (len(grid.measures), 1))
    usual = has.sum(axis=1) >= 0.5 * np.maximum(rows_ok.sum(axis=1), 1)
    silent = rows_ok & ~has & usual[:, None]
    found = runs(silent)
    keep = _overlaps(found.start, found.length, window) & (found.start > 0)
    out += [b.make("gap", grid.locs[r % nl], grid.measures[r // nl], c, n, float(n),
                   missing_hours=n, reason="no value")
            for r, c, n in zip(found.row[keep], found.start[keep], found.length[keep],
                               strict=True)]
    return out


def detect(frame: pd.DataFrame, tz: ZoneInfo, timezone: str, first: int, window_first: int,
           last: int, params: DetectorParams | None = None,
           measures: tuple[str, ...] = MEASURES) -> list[Finding]:
    """Every finding about local hours ``window_first..last``, judged with the rows from
    local hour ``first`` on as history.

    Args:
        frame: hourly rows (``loc_id``, ``ymd``, ``hh``, ``<measure>_avg``, ``sample_count``).
        tz: the zone of ``ymd``/``hh``; ``timezone`` is its name, put in each detail.
        first: the first local hour index read (history starts here).
        window_first: the first local hour index a finding may be about.
        last: the last local hour index (inclusive).
        params: detector settings (default :class:`DetectorParams`).
        measures: the frame's ``<measure>_avg`` columns (``("value",)`` for tags).

    Returns:
        Findings sorted by hour, kind, location and measure; a multi-hour flatline or gap
        is reported when it overlaps the window, keyed by its first hour.
    """
    p = (params or DetectorParams()).check()
    if frame.empty or last < window_first:
        return []
    grid = build_grid(frame, first, last, tz, measures)
    window = np.zeros(grid.hours, dtype=bool)
    window[window_first - first:] = True
    window &= grid.exists
    if not window.any() or not grid.locs:
        return []
    b = _Builder(grid, timezone)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # comparisons with NaN
        found = (_deviations(grid, p, window, b) + _spikes(grid, p, window, b)
                 + _flatlines(grid, p, window, b) + _gaps(grid, p, window, b))
    return sorted(found, key=lambda f: (f.hour_start, KINDS.index(f.kind), f.loc_id,
                                        f.measure))
