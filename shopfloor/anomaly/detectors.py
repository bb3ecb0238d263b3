"""The four detectors, vectorised over a grid of series x local hours (numpy only).

Each returns arrays over the whole grid; :mod:`shopfloor.anomaly.findings` picks the
flagged cells inside the window a run is about.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

MAD_SCALE = 0.6745  # MAD of a normal distribution in standard deviations


@dataclass(frozen=True)
class Robust:
    """A robust z-score per cell against the same local hour of the previous days."""

    score: np.ndarray  # (S, T), NaN where there is no value or too little history
    median: np.ndarray  # (S, T)
    mad: np.ndarray  # (S, T), before the floor


def nanmedian_last(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median over the last axis ignoring NaN, and the count of non-NaN values.

    ``np.sort`` puts NaN last, so the median of the ``n`` valid values sits at positions
    ``(n-1)//2`` and ``n//2``: one sort, no Python loop (np.nanmedian falls back to masked
    arrays and is many times slower on these shapes).
    """
    ordered = np.sort(values, axis=-1)
    n = np.sum(~np.isnan(values), axis=-1)
    lo = np.take_along_axis(ordered, np.maximum((n - 1) // 2, 0)[..., None], -1)[..., 0]
    hi = np.take_along_axis(ordered, np.maximum(n // 2, 0)[..., None], -1)[..., 0]
    median = np.where(n > 0, (lo + hi) / 2, np.nan)
    return median, n


def same_hour_robust(values: np.ndarray, hour_of_day: np.ndarray, days: int,
                     min_history: int, mad_floor: float, pool: bool = False) -> Robust:
    """Robust z-score of every cell against the same local hour over the ``days`` before.

    ``score = 0.6745 * (x - median) / max(MAD, mad_floor)`` where median and MAD are those
    of the same hour of the day on the previous ``days`` days (the cell itself excluded);
    NaN where fewer than ``min_history`` of those days have a value. The floor keeps a
    perfectly flat history from dividing by zero.

    With ``pool``, the MAD in the denominator is the median of the 24 same-hour MADs of
    that day: each is taken from at most ``days`` values and is often far too small by
    chance, which a single hour's MAD turns into false alarms; the pooled one is steady.
    ``mad`` keeps the cell's own MAD.
    """
    s, t = values.shape
    median = np.full((s, t), np.nan)
    mad = np.full((s, t), np.nan)
    enough = np.zeros((s, t), dtype=bool)
    for hour in range(24):
        cols = np.flatnonzero(hour_of_day == hour)
        if cols.size == 0:
            continue
        y = values[:, cols]  # (S, D): this hour on consecutive days
        padded = np.concatenate([np.full((s, days), np.nan), y], axis=1)
        history = sliding_window_view(padded, days, axis=1)[:, : cols.size, :]  # days before
        med, n = nanmedian_last(history)
        dev, _ = nanmedian_last(np.abs(history - med[..., None]))
        median[:, cols], mad[:, cols], enough[:, cols] = med, dev, n >= min_history
    scale = pooled_by_day(mad, hour_of_day) if pool else mad
    score = MAD_SCALE * (values - median) / np.maximum(scale, mad_floor)
    return Robust(np.where(enough, score, np.nan), median, mad)


def pooled_by_day(per_cell: np.ndarray, hour_of_day: np.ndarray) -> np.ndarray:
    """For every cell, the median of ``per_cell`` over the 24 hours of its local day."""
    s, t = per_cell.shape
    day = (np.arange(t) - hour_of_day + hour_of_day[0]) // 24
    by_day = np.full((s, day.max() + 1, 24), np.nan)
    by_day[:, day, hour_of_day] = per_cell
    pooled, _ = nanmedian_last(by_day)
    return pooled[:, day]


def recent_level(values: np.ndarray, hours: int) -> np.ndarray:
    """The median of each series over the ``hours`` before each cell (the cell excluded),
    NaN with fewer than half of them: the level the daily cycle swings around."""
    level = pd.DataFrame(values.T).rolling(hours, min_periods=hours // 2).median()
    return level.shift(1).to_numpy().T


def hourly_diffs(values: np.ndarray, exists: np.ndarray) -> np.ndarray:
    """``x[t] - x[previous existing hour]`` per cell (NaN where either is missing): hours
    that do not exist in the zone are skipped, so the diff across a spring-forward is
    still the change over one real hour."""
    out = np.full(values.shape, np.nan)
    cols = np.flatnonzero(exists)
    real = values[:, cols]
    out[:, cols[1:]] = real[:, 1:] - real[:, :-1]
    return out


def spike_flags(diffs: Robust, raw_diffs: np.ndarray, threshold: float,
                min_change: float) -> np.ndarray:
    """Cells whose change from the previous hour is a spike: a robust z of the change
    (against the same hour's changes) beyond ``threshold`` and a change at least
    ``min_change`` away from the usual one. The way back of a one-hour spike (the next
    hour flagged with the opposite sign) is not a second spike."""
    flagged = (np.abs(diffs.score) > threshold) & (
        np.abs(raw_diffs - diffs.median) >= min_change)
    back = np.zeros_like(flagged)
    sign = np.sign(np.nan_to_num(diffs.score))
    back[:, 1:] = flagged[:, :-1] & flagged[:, 1:] & (sign[:, 1:] == -sign[:, :-1])
    # Across a skipped (non-existent) hour the previous flag is two columns back; rare
    # enough (one hour a year) to leave as two findings.
    return flagged & ~back


@dataclass(frozen=True)
class Runs:
    """Runs of consecutive flagged cells: row, first column, length."""

    row: np.ndarray
    start: np.ndarray
    length: np.ndarray


def runs(mask: np.ndarray) -> Runs:
    """Every run of consecutive True cells in each row of ``mask``."""
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)
    rs, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)  # row-major order: pairs with the starts
    return Runs(rs, starts, ends - starts)


def flatline_runs(values: np.ndarray, exists: np.ndarray, min_hours: int, epsilon: float,
                  min_usual_change: float) -> tuple[Runs, np.ndarray]:
    """Stuck sensors: at least ``min_hours`` consecutive (existing) hours whose values
    differ by less than ``epsilon``, in series whose median hourly change is at least
    ``min_usual_change`` (a series that never moves is not stuck).

    Returns:
        The runs in grid columns (first stuck hour, number of hours, counting skipped
        non-existent hours as the grid does) and each series' median absolute change.
    """
    cols = np.flatnonzero(exists)
    real = values[:, cols]
    diffs = np.abs(real[:, 1:] - real[:, :-1])
    usual, _ = nanmedian_last(diffs)
    still = (diffs < epsilon) & (usual[:, None] >= min_usual_change)
    found = runs(still)
    # A run of k small changes from diff column c is k + 1 equal values from column c.
    hours = found.length + 1
    # The value before column 0 is unseen: a run from there may have started earlier.
    keep = (hours >= min_hours) & (found.start > 0)
    first = cols[found.start[keep]]
    last = cols[found.start[keep] + found.length[keep]]
    return Runs(found.row[keep], first, last - first + 1), usual


def gap_hours(present: np.ndarray, exists: np.ndarray, through: int) -> np.ndarray:
    """(L, T) hours expected but absent: existing hours after a location's first present
    hour up to column ``through`` (the last hour any location has) that are not present."""
    t = np.arange(present.shape[1])
    any_present = present.any(axis=1)
    first = np.where(any_present, present.argmax(axis=1), present.shape[1])
    expected = exists[None, :] & (t[None, :] > first[:, None]) & (t[None, :] <= through)
    return expected & ~present
