"""Benchmark: the anomaly detectors on a synthetic year with planted anomalies (not a test).

A year of hourly rows (Europe/Berlin, both DST changes) for ``--locations`` locations x 3
measures from shopfloor/anomaly/synthetic.py (daily cycle, seasonal swing, slow drift,
AR(1) noise) with anomalies of each kind planted at known hours, seed ``--seed``. The
detector runs once over the whole year with its default settings.

Per kind: recall (planted hours found / planted hours) and false-positive rate (hours
flagged with that kind among the location-measure-hours no anomaly of any kind was
planted in, nor the hour after one); a finding of one kind on another kind's planted hour
(a spike is also a deviation) is counted apart as "on other plants". A gap of a whole
location counts for its 3 measures. Baseline in the same run: static thresholds, the
series' own mean +- 3 standard deviations over the whole year (what a threshold alert
could do at best), on the same plants.

Usage::

    .venv/bin/python benchmarks/bench_anomaly.py --locations 50 --seed 12
"""

import argparse
import time
import warnings

import numpy as np

from shopfloor.aggregation.hours import index_of_ymd_hh, resolve_timezone
from shopfloor.anomaly.findings import KINDS, WHOLE_LOCATION, detect
from shopfloor.anomaly.grid import MEASURES
from shopfloor.anomaly.synthetic import Synthetic, synthetic_year

ZONE = "Europe/Berlin"


def flagged(syn: Synthetic, findings) -> dict[str, np.ndarray]:
    nl = len(syn.locs)
    row = {(loc, m): i * nl + j for i, m in enumerate(MEASURES) for j, loc in enumerate(syn.locs)}
    out = {k: np.zeros_like(syn.affected) for k in KINDS}
    for f in findings:
        c = index_of_ymd_hh(f.detail["ymd"], f.detail["hh"]) - syn.first
        for m in MEASURES if f.measure == WHOLE_LOCATION else (f.measure,):
            out[f.kind][row[(f.loc_id, m)], c:c + f.hours] = True
    return out


def static_thresholds(syn: Synthetic) -> np.ndarray:
    """Cells beyond the series' mean +- 3 sd of the whole year (values as planted)."""
    from shopfloor.anomaly.grid import build_grid

    grid = build_grid(syn.frame, syn.first, syn.first + syn.exists.size - 1,
                      resolve_timezone(ZONE))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(grid.avg, axis=1, keepdims=True)
        sd = np.nanstd(grid.avg, axis=1, keepdims=True)
        return np.abs(grid.avg - mean) > 3 * sd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--locations", type=int, default=50)
    ap.add_argument("--seed", type=int, default=12)
    args = ap.parse_args()
    t0 = time.perf_counter()
    syn = synthetic_year(n_locations=args.locations, seed=args.seed, timezone=ZONE)
    t1 = time.perf_counter()
    last = syn.first + syn.exists.size - 1
    findings = detect(syn.frame, resolve_timezone(ZONE), ZONE, syn.first, syn.first, last)
    t2 = time.perf_counter()
    det = flagged(syn, findings)
    negatives = ~syn.affected & syn.exists[None, :]
    cells = len(syn.frame) * len(MEASURES)
    print(f"{args.locations} locations x 3 measures, {len(syn.frame):,} hourly rows "
          f"({cells:,} values), seed {args.seed}")
    print(f"generate {t1 - t0:.1f} s, detect {t2 - t1:.1f} s "
          f"({cells / (t2 - t1):,.0f} values/s), {len(findings):,} findings")
    print("| kind | planted hours | recall | false positives | FPR | on other plants |")
    print("|---|---|---|---|---|---|")
    for kind in KINDS:
        truth, d = syn.truth[kind], det[kind]
        fp = int((d & negatives).sum())
        other = int((d & syn.affected & ~truth).sum())
        print(f"| {kind} | {int(truth.sum()):,} | {(d & truth).sum() / truth.sum():.4f} | "
              f"{fp:,} | {fp / negatives.sum():.4%} | {other:,} |")
    static = static_thresholds(syn)
    print("baseline static thresholds (mean +- 3 sd per series and year):")
    for kind in ("deviation", "spike"):
        truth = syn.truth[kind]
        print(f"  {kind}: recall {(static & truth).sum() / truth.sum():.4f}, "
              f"FPR {(static & negatives).sum() / negatives.sum():.4%}")


if __name__ == "__main__":
    main()
