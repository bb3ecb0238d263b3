"""The demo's last step: the quality rows every flow wrote, and the daily rollup checked
against an independent SQL over the raw readings."""

import math

from sqlalchemy import String, cast, func, select

from shopfloor.db.schema import configured_tables
from tasks import runtime

TARGET = "shopfloor-warehouse-db"
MEASURES = ("temperature", "humidity", "pcv_temperature")


def _raw_days(conn) -> dict[tuple[str, str], dict[str, float | int | None]]:
    """Count, sum, min and max per measure, per location and UTC day, straight from raw
    (SQLite keeps ``capture_dt`` as ISO text: its first 10 characters are the day)."""
    raw = configured_tables().temperature_raw
    day = func.replace(func.substr(cast(raw.c.capture_dt, String), 1, 10), "-", "")
    aggs = [(f"{m}_{name}", fn(raw.c[m])) for m in MEASURES
            for name, fn in (("count", func.count), ("sum", func.sum), ("min", func.min),
                             ("max", func.max))]
    query = select(raw.c.loc_id, day, *(agg for _, agg in aggs)).group_by(raw.c.loc_id, day)
    return {(r[0], r[1]): dict(zip((name for name, _ in aggs), r[2:], strict=True))
            for r in conn.execute(query)}


def _same(a: object, b: object) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)


def quality_demo_step() -> list[str]:
    """Print the quality rows per flow and compare the daily rollup with raw."""
    tables = configured_tables()
    q, daily = tables.quality_score, tables.temperature_daily
    engine = runtime.engine(TARGET)
    if engine.dialect.name != "sqlite":
        return ["the daily check of the demo reads SQLite; skipped on another database"]
    with engine.connect() as conn:
        by_flow = conn.execute(select(q.c.flow, func.count(), func.min(q.c.overall),
                                      func.sum(q.c.rows_in), func.sum(q.c.rows_quarantined))
                               .group_by(q.c.flow).order_by(q.c.flow)).all()
        stored = {(r.loc_id, r.ymd): dict(r._mapping) for r in conn.execute(
            select(daily).where(daily.c.loc_id != "SYN-01"))}
        expected = _raw_days(conn)
    lines = ["quality rows (flow: rows, lowest overall score, records in, quarantined):"]
    lines += [f"  {flow:<24} {n:>3} rows  overall >= {low:.3f}  in {rows_in or 0:>6}  "
              f"quarantined {bad or 0}" for flow, n, low, rows_in, bad in by_flow]
    wrong = [key for key, want in expected.items()
             if key not in stored or not all(_same(stored[key][c], v) for c, v in want.items())]
    lines.append(f"daily rollup: {len(stored)} location-days, {len(expected)} in raw, "
                 f"{len(wrong)} differing from an independent SQL over raw"
                 + (f": {wrong[:3]}" if wrong else " (exact)"))
    return lines
