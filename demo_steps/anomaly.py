"""The demo's anomaly step: a synthetic history with one planted anomaly of each kind,
then the ``anomaly-detection`` flow over its last days, and which plants it found.

The captured minutes of the demo are far too short for a 28-day history, so the step
writes 45 days of hourly rows for one synthetic location (``SYN-01``, site SYNTHETIC)
into the warehouse's hourly table: a daily cycle with a little noise, and at known hours
a deviation, a spike, a stuck sensor and a missing hour.
"""

import math
import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select

from flows.anomaly_detection import detect_anomalies
from shopfloor.db.schema import configured_tables
from shopfloor.db.types import utcnow
from shopfloor.db.upsert import upsert
from tasks import runtime

TARGET = "shopfloor-warehouse-db"
LOC = "SYN-01"
FIRST = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 45
# kind -> (hour index from FIRST, measure): where each anomaly is planted
PLANTED = {
    "deviation": (40 * 24 + 3, "humidity"),    # humidity 20 points above its usual 03:00
    "spike": (41 * 24 + 15, "temperature"),    # temperature jumps 9 degrees for one hour
    "flatline": (42 * 24 + 6, "pcv_temperature"),  # stuck for 10 hours from 06:00
    "gap": (43 * 24 + 10, "*"),                # no row at all for 10:00
}


def _value(rng: random.Random, measure: str, h: int) -> float:
    base = {"temperature": 22.0, "humidity": 50.0, "pcv_temperature": 35.0}[measure]
    swing = {"temperature": 3.0, "humidity": 8.0, "pcv_temperature": 4.0}[measure]
    return base + swing * math.sin(2 * math.pi * (h % 24) / 24) + rng.gauss(0, 0.25)


def synthetic_rows() -> list[dict]:
    """45 days of hourly rows for ``SYN-01`` with the four plants of ``PLANTED``."""
    rng = random.Random(7)
    stuck_at, stuck = PLANTED["flatline"][0], None
    rows = []
    for h in range(DAYS * 24):
        if h == PLANTED["gap"][0]:
            continue
        values = {m: _value(rng, m, h) for m in ("temperature", "humidity", "pcv_temperature")}
        if h == PLANTED["deviation"][0]:
            values["humidity"] += 20.0
        if h == PLANTED["spike"][0]:
            values["temperature"] += 9.0
        if stuck_at <= h < stuck_at + 10:
            stuck = values["pcv_temperature"] if stuck is None else stuck
            values["pcv_temperature"] = stuck
        at = FIRST + timedelta(hours=h)
        row = {"loc_id": LOC, "ymd": at.strftime("%Y%m%d"), "hh": at.strftime("%H"),
               "sample_count": 720, "updated_at": utcnow()}
        for m, v in values.items():
            row[f"{m}_max"] = round(v + 0.4, 3)
            row[f"{m}_avg"] = round(v, 3)
        rows.append(row)
    return rows


def anomaly_demo_step() -> list[str]:
    """Write the synthetic history, detect over its last 6 days, report each plant."""
    hourly = configured_tables().temperature_hourly
    with runtime.engine(TARGET).begin() as conn:
        conn.execute(delete(hourly).where(hourly.c.loc_id == LOC))
        upsert(conn, hourly, synthetic_rows(), ["loc_id", "ymd", "hh"])
    start, end = FIRST + timedelta(days=39), FIRST + timedelta(days=DAYS)
    summary = detect_anomalies(start=start.replace(tzinfo=None), end=end.replace(tzinfo=None),
                               target_db=TARGET, timezone="UTC")
    anomaly = configured_tables().anomaly
    with runtime.engine(TARGET).connect() as conn:
        found = [dict(r._mapping) for r in conn.execute(
            select(anomaly).where(anomaly.c.loc_id == LOC))]
    lines = [f"{DAYS} days of synthetic hourly rows for {LOC}; detection over "
             f"{start:%Y-%m-%d} .. {end:%Y-%m-%d}: {summary['findings']} findings "
             f"({summary['new']} new this run, {len(found)} stored for {LOC})"]
    for kind, (h, measure) in PLANTED.items():
        at = FIRST + timedelta(hours=h)
        hit = [f for f in found if f["kind"] == kind and f["loc_id"] == LOC
               and f["measure"] == measure and _covers(f, at)]
        lines.append(f"  planted {kind:<9} {measure:<15} at {at:%Y-%m-%d %H:00} UTC: "
                     + ("found" if hit else "NOT FOUND"))
    return lines


def _covers(finding: dict, at: datetime) -> bool:
    start = finding["hour_start"]
    return start <= at < start + timedelta(hours=int(finding["hours"] or 1))
