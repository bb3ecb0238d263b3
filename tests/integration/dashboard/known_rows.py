"""Known rows for the dashboard's page tests, and what the page must show for them (by SQL
written independently of the dashboard's queries)."""

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from shopfloor.db.engine import init_db, make_engine

LIMITS = {"temperature_min": 15.0, "temperature_max": 30.0, "humidity_min": 20.0,
          "humidity_max": 80.0, "pcv_temperature_min": 10.0, "pcv_temperature_max": 60.0}


def raw(loc: str, device: str, at: datetime, temperature: float) -> dict:
    return {"loc_id": loc, "capture_dt": at, "temperature": temperature, "humidity": 45.0,
            "pcv_temperature": 30.0, "device": device, "ingested_at": at}


def hourly(loc: str, day: datetime, hh: int, t_max: float, t_avg: float) -> dict:
    return {"loc_id": loc, "ymd": day.strftime("%Y%m%d"), "hh": f"{hh:02d}",
            "temperature_max": t_max, "temperature_avg": t_avg, "humidity_max": 50.0,
            "humidity_avg": 45.0, "pcv_temperature_max": 31.0, "pcv_temperature_avg": 30.0,
            "sample_count": 720, "updated_at": day}


TAGS = [  # id, name, device, location, unit, data_type
    (1, "temperature", "plc-1", "L01", "degC", "float32"),
    (2, "line_pressure", "plc-1", "L01", "bar", "float32"),
    (3, "motor_current", "plc-1", "L01", "A", "float32"),
    (4, "recipe", "plc-1", "L01", None, "string"),
    (5, "flow_rate", "plc-2", "L02", "m3/h", "float32"),
]
PRESSURE, RECIPE = 2, 4


def tag_samples(now: datetime) -> list[dict]:
    """Six hours of one point per five minutes for L01's tags: line_pressure with two
    points out of range (bad, value kept) and one uncertain; the recipe changes twice."""
    rows = []
    for k in range(72):
        at = now - timedelta(minutes=5 * k + 2)
        pressure, quality, reason = 3.0 + (k % 9) / 4, 192, None
        if k in (10, 40):
            pressure, quality, reason = 9.5, 0, "out of range [0, 8]"
        elif k == 25:
            quality, reason = 64, "stale"
        rows.append({"tag_id": PRESSURE, "ts": at, "value": pressure, "text_value": None,
                     "quality": quality, "reason": reason, "ingested_at": at})
        rows.append({"tag_id": 1, "ts": at, "value": 20.0 + k % 7, "text_value": None,
                     "quality": 192, "reason": None, "ingested_at": at})
        recipe = "R-100" if k >= 48 else "R-200" if k >= 12 else "R-300"
        rows.append({"tag_id": RECIPE, "ts": at, "value": None, "text_value": recipe,
                     "quality": 192, "reason": None, "ingested_at": at})
    return rows


def fill_warehouse(url: str, now: datetime) -> None:
    engine = make_engine(url)
    tables = init_db(engine)
    readings = [raw("L01", "plc-1", now - timedelta(minutes=5 * k + 1), 20.0 + k % 7)
                for k in range(72)]  # six hours of one reading per five minutes
    readings += [raw("L02", "plc-2", now - timedelta(minutes=40), 22.0),
                 raw("L03", "plc-3", now - timedelta(hours=3), 24.0)]
    days = [now - timedelta(days=d) for d in (2, 1, 0)]
    rows = [hourly(loc, day, hh, 20.0 + d + hh / 10 + (5 if loc == "L02" else 0), 19.0 + d)
            for loc in ("L01", "L02") for d, day in enumerate(days) for hh in range(0, 24, 3)]
    reasons = json.dumps([{"column": "temperature", "check": "not_nullable", "value": "nan"}])
    with engine.begin() as conn:
        conn.execute(insert(tables.location), [
            {"loc_id": loc, "name": f"line {loc}", "site": "P1", "active": True, **LIMITS}
            for loc in ("L01", "L02", "L03")])
        conn.execute(insert(tables.temperature_raw), readings)
        conn.execute(insert(tables.temperature_hourly), rows)
        conn.execute(insert(tables.quarantine), [
            {"source": "modbus-capture", "record": "{}", "reasons": reasons, "run_id": "r",
             "quarantined_at": now - timedelta(hours=h)} for h in (1, 2, 5)])
        for table in (tables.anomaly, tables.quality_score):
            table.create(conn, checkfirst=True)
        conn.execute(insert(tables.anomaly), [
            {"kind": "spike", "loc_id": "L01", "measure": "temperature",
             "hour_start": now.replace(minute=0, second=0, microsecond=0)
             - timedelta(days=1), "hours": 1, "score": 8.0, "detail": "{}", "run_id": "r",
             "detected_at": now}])
        conn.execute(insert(tables.quality_score), [
            {"flow": flow, "subject": "x", "window_start": now - timedelta(hours=h),
             "window_end": now - timedelta(hours=h - 1), "completeness": 1.0,
             "validity": 0.9, "uniqueness": 1.0, "timeliness": 1.0, "overall": 0.975,
             "rows_in": 100, "run_id": "r", "recorded_at": now}
            for flow in ("modbus-capture", "hourly-aggregation") for h in range(1, 12)])
        # What two collectors' forwarders reported: one landing is behind.
        conn.execute(insert(tables.collector_backlog), [
            {"collector": c, "sink": sink, "backlog_samples": n,
             "oldest_sample_at": now - timedelta(minutes=12) if n else None,
             "dropped_samples": 0, "buffer_fill_pct": 0.4, "reported_at": now}
            for c, sink, n in (("line-1", "warehouse:wh", 0), ("line-1", "landing:s3", 37),
                               ("line-2", "warehouse:wh", 4))])
        conn.execute(insert(tables.tags), [
            {"id": i, "name": n, "device": d, "location": loc, "unit": u, "data_type": dt,
             "description": None, "source_name": f"holding:{100 + 2 * i}", "updated_at": now}
            for i, n, d, loc, u, dt in TAGS])
        conn.execute(insert(tables.tag_samples), tag_samples(now))
    engine.dispose()


def fill_metadata(url: str, now: datetime) -> None:
    engine = make_engine(url)
    tables = init_db(engine)
    objects = ([("D01", "PENDING")] * 3 + [("D01", "FAILED")] + [("D02", "CLAIMED")] * 2
               + [("D02", "SUCCESS")] * 5 + [("D03", "SUCCESS")])
    with engine.begin() as conn:
        conn.execute(insert(tables.s3_object), [
            {"key": f"raw/{d}/{i}.json", "key_hash": f"{i:064d}", "distrik": d,
             "discovered_at": now, "compression_status": s, "attempts": 0}
            for i, (d, s) in enumerate(objects)])
        conn.execute(insert(tables.quarantine), [
            {"source": "s3-compaction", "record": "{}", "reasons": "[]", "run_id": "r",
             "quarantined_at": now - timedelta(hours=1)}] * 2)
    engine.dispose()


def expected_numbers(warehouse: Path, metadata: Path, now: datetime) -> dict[str, str]:
    """What the page must show, by SQL written independently of the dashboard's queries."""
    wh, md = sqlite3.connect(warehouse), sqlite3.connect(metadata)
    online_since = (now - timedelta(minutes=15)).strftime("%Y-%m-%d %H:%M:%S")
    week = (now - timedelta(days=7)).strftime("%Y-%m-%d %H:%M:%S")
    online = wh.execute("SELECT COUNT(*) FROM (SELECT MAX(capture_dt) AS last FROM "
                        "temperature_raw GROUP BY loc_id, device) WHERE last >= ?",
                        (online_since,)).fetchone()[0]
    newest = datetime.fromisoformat(wh.execute(
        "SELECT MAX(capture_dt) FROM temperature_raw").fetchone()[0]).replace(tzinfo=UTC)
    day, day_max = wh.execute(
        "SELECT ymd, MAX(temperature_max) FROM temperature_hourly WHERE loc_id = 'L02' "
        "GROUP BY ymd ORDER BY ymd DESC LIMIT 1").fetchone()
    quarantined = sum(db.execute("SELECT COUNT(*) FROM quarantine WHERE quarantined_at >= ?",
                                 (week,)).fetchone()[0] for db in (wh, md))
    backlog = dict(md.execute(
        "SELECT distrik, COUNT(*) FROM s3_object WHERE compression_status IN "
        "('PENDING', 'CLAIMED', 'FAILED') GROUP BY distrik").fetchall())
    forward = wh.execute("SELECT collector, sink, backlog_samples FROM collector_backlog"
                         ).fetchall()
    wh.close()
    md.close()
    assert (now - newest).total_seconds() < 240  # so the page, a little later, says < 5 min
    return {"Devices online": str(online), "Newest reading age": "< 5 min",
            f"Daily max L02 {day}": f"{day_max:.2f}", "Quarantined": str(quarantined),
            "Compaction backlog": str(sum(backlog.values())),
            **{f"Backlog {d}": str(n) for d, n in backlog.items()},
            "Forward backlog": str(sum(n for _, _, n in forward)),
            **{f"Forward backlog {c} {s}": str(n) for c, s, n in forward}}


def expected_tag(warehouse: Path, now: datetime, tag_id: int = PRESSURE) -> dict:
    """What the page must show for one numeric tag over its default range (24 h, so
    5-minute buckets), by SQL written independently of the dashboard's queries."""
    wh = sqlite3.connect(warehouse)
    since = (now - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
    lo, hi, not_good = wh.execute(
        "SELECT MIN(value), MAX(value), SUM(quality < 192) FROM tag_samples "
        "WHERE tag_id = ? AND ts >= ?", (tag_id, since)).fetchone()
    latest = wh.execute("SELECT value FROM tag_samples WHERE tag_id = ? ORDER BY ts DESC "
                        "LIMIT 1", (tag_id,)).fetchone()[0]
    buckets = wh.execute(
        "SELECT CAST(strftime('%s', ts) AS INTEGER) / 300 * 300 AS b, COUNT(*), MIN(value),"
        " AVG(value), MAX(value), SUM(quality < 64), group_concat(reason) FROM tag_samples "
        "WHERE tag_id = ? AND ts >= ? GROUP BY b ORDER BY b", (tag_id, since)).fetchall()
    wh.close()
    return {"latest": f"{latest:.2f}", "min": f"{lo:.2f}", "max": f"{hi:.2f}",
            "not good": str(not_good), "buckets": buckets}
