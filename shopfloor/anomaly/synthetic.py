"""A synthetic year of hourly rows with planted anomalies at known places, for the
benchmark (benchmarks/bench_anomaly.py), the tests and the demo.

Each series is a level, a daily cycle, a seasonal swing, a slow linear drift and AR(1)
noise. Plant sizes are multiples of the series' noise (its standard deviation
``sigma``), never of the detectors' settings: deviations of 6-10 sigma over 2-6 hours,
one-hour spikes of 8-15 sigma, stuck sensors of 6-24 hours (the value held exactly),
and gaps: 1-12 hours without a row, or 1-6 hours of one measure without a value.
"""

from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from shopfloor.anomaly.grid import MEASURES, hour_starts, local_labels

# level, daily amplitude, seasonal amplitude, drift per year, noise sigma
SHAPES = {"temperature": (22.0, 2.5, 2.0, 0.8, 0.25),
          "humidity": (55.0, 6.0, 5.0, 2.0, 1.0),
          "pcv_temperature": (35.0, 1.5, 1.0, 0.5, 0.15)}
PHI = 0.7  # hour-to-hour correlation of the noise
FIRST_PLANT_DAY = 35  # leave the detectors' history window clean at the start


@dataclass
class Synthetic:
    """Hourly rows and where the anomalies were planted.

    ``truth[kind]`` and ``affected`` are (series, hour) masks in the grid's series order
    (measure-major, ``m * len(locs) + l``) over local hours ``first..first+T-1``;
    ``affected`` covers every planted hour of any kind plus the hour after each plant
    (where the value comes back).
    """

    frame: pd.DataFrame
    first: int
    locs: list[str]
    exists: np.ndarray
    truth: dict[str, np.ndarray]
    affected: np.ndarray


def _series(rng: np.random.Generator, measure: str, hours: np.ndarray) -> np.ndarray:
    level, daily, seasonal, drift, sigma = SHAPES[measure]
    hod, t = hours % 24, (hours - hours[0]) / (24 * 365)
    phase, amp = rng.uniform(7, 11), daily * rng.uniform(0.8, 1.2)
    cycle = amp * (np.sin(2 * np.pi * (hod - phase) / 24) + 0.3 * np.sin(4 * np.pi * hod / 24))
    noise = np.empty(hours.size)
    innov = rng.normal(0, sigma * np.sqrt(1 - PHI ** 2), hours.size)
    noise[0] = rng.normal(0, sigma)
    for i in range(1, hours.size):  # AR(1); a year is 8,760 steps
        noise[i] = PHI * noise[i - 1] + innov[i]
    return (level + rng.normal(0, level * 0.05) + cycle
            + seasonal * np.sin(2 * np.pi * (t - rng.uniform(0.2, 0.3))) + drift * t + noise)


def _free_slot(rng: np.random.Generator, busy: np.ndarray, length: int, lo: int) -> int:
    """A start whose ``length`` hours and 2 hours either side are free and existing."""
    for _ in range(1000):
        start = int(rng.integers(lo, busy.size - length - 3))
        if not busy[start - 2:start + length + 2].any():
            return start
    raise RuntimeError("no free slot left; plant fewer anomalies")


def _plant_row_gaps(rng, busy, truth, nl: int, per_series: int) -> np.ndarray:
    """Rows taken away: a gap of every measure of the location."""
    present = np.ones((nl, busy.shape[1]), bool)
    for li in range(nl):
        loc_busy = busy[li::nl].any(axis=0)
        for _ in range(per_series // 2):
            n = int(rng.integers(1, 13))
            s = _free_slot(rng, loc_busy, n, FIRST_PLANT_DAY * 24)
            loc_busy[s:s + n] = True
            present[li, s:s + n] = False
            for m in range(len(MEASURES)):
                truth["gap"][m * nl + li, s:s + n] = True
                busy[m * nl + li, s:s + n] = True
    return present


def _plant(rng, values, busy, truth, r: int, sigma: float, per_series: int) -> None:
    """Deviations, spikes, stuck runs and value gaps in series ``r``."""
    for kind, count, sizes in (("deviation", per_series, (2, 7)),
                               ("spike", per_series, (1, 2)),
                               ("flatline", per_series // 2, (6, 25)),
                               ("gap", per_series // 4, (1, 7))):
        for _ in range(count):
            n = int(rng.integers(*sizes))
            s = _free_slot(rng, busy[r], n, FIRST_PLANT_DAY * 24)
            busy[r, s:s + n] = True
            truth[kind][r, s:s + n] = True
            sign = rng.choice([-1.0, 1.0])
            if kind == "deviation":
                values[r, s:s + n] += sign * rng.uniform(6, 10) * sigma
            elif kind == "spike":
                values[r, s] += sign * rng.uniform(8, 15) * sigma
            elif kind == "flatline":
                values[r, s:s + n] = values[r, s]
            else:
                values[r, s:s + n] = np.nan


def _frame(locs, hours, exists, present, values) -> pd.DataFrame:
    ymd, hh = local_labels(hours)
    frames, nl = [], len(locs)
    for li, loc in enumerate(locs):
        keep = exists & present[li]
        data = {"loc_id": loc, "ymd": ymd[keep], "hh": hh[keep], "sample_count": 720}
        for m, measure in enumerate(MEASURES):
            data[f"{measure}_avg"] = values[m * nl + li, keep]
        frames.append(pd.DataFrame(data))
    return pd.concat(frames, ignore_index=True)


def synthetic_year(n_locations: int = 50, seed: int = 12, year: int = 2024,
                   timezone: str = "Europe/Berlin", per_series: int = 8) -> Synthetic:
    """One year of hourly rows for ``n_locations`` locations, ``per_series`` deviations
    and spikes and ``per_series // 2`` stuck runs per series, ``per_series // 2`` row
    gaps per location and ``per_series // 4`` value gaps per series."""
    rng = np.random.default_rng(seed)
    first = int((np.datetime64(f"{year}-01-01T00", "h") - np.datetime64("1970-01-01T00", "h"))
                // np.timedelta64(1, "h"))
    last = first + (366 if year % 4 == 0 else 365) * 24 - 1
    exists, _ = hour_starts(first, last, ZoneInfo(timezone))
    hours = first + np.arange(exists.size)
    locs = [f"S{i:03d}" for i in range(n_locations)]
    nl = len(locs)
    values = np.stack([_series(rng, m, hours) for m in MEASURES for _ in locs])
    truth = {k: np.zeros(values.shape, bool) for k in ("deviation", "spike", "flatline", "gap")}
    busy = np.tile(~exists, (len(MEASURES) * nl, 1))
    present = _plant_row_gaps(rng, busy, truth, nl, per_series)
    for r in range(len(MEASURES) * nl):
        _plant(rng, values, busy, truth, r, SHAPES[MEASURES[r // nl]][4], per_series)
    affected = np.zeros_like(busy)
    for mask in truth.values():
        affected |= mask
        affected[:, 1:] |= mask[:, :-1]  # the hour after: the way back
    return Synthetic(_frame(locs, hours, exists, present, values), first, locs, exists,
                     truth, affected)
