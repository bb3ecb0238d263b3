"""The dashboard's queries on SQLite and PostgreSQL, checked against Python over the same rows."""

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from shopfloor.dashboard import queries as q

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
LIMITS = {"temperature_min": 10.0, "temperature_max": 35.0}


def raw(loc: str, at: datetime, temperature: float | None, device: str = "plc") -> dict:
    return {"loc_id": loc, "capture_dt": at, "temperature": temperature, "humidity": 50.0,
            "pcv_temperature": None, "device": device, "ingested_at": at}


def location(loc: str, active: bool = True) -> dict:
    return {"loc_id": loc, "name": f"line {loc}", "site": "P1", "active": active, **LIMITS}


def test_last_readings_per_device_and_silent_active_locations(wh):
    wh.insert(wh.tables.location, [location("L1"), location("L2"), location("L3"),
                                   location("L4", active=False)])
    wh.insert(wh.tables.temperature_raw, [
        raw("L1", NOW - timedelta(minutes=30), 20.0, "plc-a"),
        raw("L1", NOW - timedelta(minutes=2), 21.0, "plc-a"),
        raw("L1", NOW - timedelta(minutes=9), 22.0, "plc-b"),
        raw("L2", NOW - timedelta(days=10), 23.0, "plc-c"),     # silent beyond the lookback
        raw("L2", NOW - timedelta(days=11), 23.0, "plc-old"),
        raw("X9", NOW - timedelta(hours=3), 24.0, "stray"),     # no master data: still shown
    ])
    with wh.engine.connect() as conn:
        df = q.last_readings(conn, wh.tables, NOW, lookback=timedelta(days=7))
    got = {(r.loc_id, r.device): (r.last_reading, r.readings) for r in df.itertuples()
           if r.loc_id != "L3"}
    assert got == {
        ("L1", "plc-a"): (NOW - timedelta(minutes=2), 2),
        ("L1", "plc-b"): (NOW - timedelta(minutes=9), 1),
        ("L2", "plc-c"): (NOW - timedelta(days=10), 0),   # its newest row, found by key
        ("X9", "stray"): (NOW - timedelta(hours=3), 1),
    }
    never = df[df["loc_id"] == "L3"]   # active, never heard from; L4 is inactive
    assert len(never) == 1 and pd.isna(never["last_reading"].iloc[0])
    assert never["device"].iloc[0] is None and never["readings"].iloc[0] == 0


def test_five_minute_buckets_match_python_over_the_same_rows(wh):
    start = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    rows = [raw("L1", start + timedelta(seconds=37 * k, microseconds=123456 * (k % 3)),
                float(k)) for k in range(40)]
    rows.append(raw("L1", start + timedelta(minutes=5), 100.0, "edge"))  # first of its bucket
    rows.append(raw("L1", start + timedelta(hours=2), 999.0))            # outside the window
    rows.append(raw("L2", start + timedelta(minutes=1), None))           # NULL measure
    wh.insert(wh.tables.temperature_raw, rows)
    end = start + timedelta(hours=1)
    with wh.engine.connect() as conn:
        df = q.five_minute_buckets(conn, wh.tables, ["L1", "L2"], start, end)
    expected = defaultdict(list)
    for r in rows:
        if start <= r["capture_dt"] < end:
            minute = r["capture_dt"].replace(second=0, microsecond=0)
            expected[(r["loc_id"], minute - timedelta(minutes=minute.minute % 5))].append(
                r["temperature"])
    got = {(r.loc_id, r.bucket_start.to_pydatetime()): r for r in df.itertuples()}
    assert set(got) == set(expected)
    for key, temps in expected.items():
        present = [t for t in temps if t is not None]
        row = got[key]
        assert row.readings == len(temps)
        if present:
            assert (row.temperature_min, row.temperature_max) == (min(present), max(present))
            assert row.temperature_avg == pytest.approx(sum(present) / len(present))
        else:
            assert row.temperature_avg is None or row.temperature_avg != row.temperature_avg
    assert got[("L1", start + timedelta(minutes=5))].temperature_max == 100.0


def hourly_row(loc: str, ymd: str, hh: str, t_max: float | None, t_avg: float | None,
               count: int) -> dict:
    return {"loc_id": loc, "ymd": ymd, "hh": hh, "temperature_max": t_max,
            "temperature_avg": t_avg, "humidity_max": 60.0, "humidity_avg": 50.0,
            "pcv_temperature_max": None, "pcv_temperature_avg": None, "sample_count": count,
            "updated_at": NOW}


def test_daily_is_max_of_max_and_average_weighted_by_samples(wh):
    wh.insert(wh.tables.temperature_hourly, [
        hourly_row("L1", "20261130", "00", 12.0, 10.0, 10),
        hourly_row("L1", "20261130", "01", 25.0, 20.0, 30),
        hourly_row("L1", "20261130", "02", None, None, 5),   # no temperature that hour
        hourly_row("L1", "20261201", "00", 30.0, 29.0, 1),
        hourly_row("L2", "20261130", "00", 50.0, 40.0, 2),
        hourly_row("L1", "20261129", "23", 99.0, 99.0, 9),   # before the window
    ])
    with wh.engine.connect() as conn:
        days = q.daily(conn, wh.tables, ["L1"], "20261130", "20261201")
        hours = q.hourly(conn, wh.tables, ["L1"], "20261130", "20261130")
    by_day = {r.ymd: r for r in days.itertuples()}
    assert set(by_day) == {"20261130", "20261201"}
    d = by_day["20261130"]
    assert d.temperature_max == 25.0
    assert d.temperature_avg == pytest.approx((10 * 10 + 20 * 30) / 40)  # not (10+20)/2
    assert d.humidity_avg == pytest.approx(50.0) and d.pcv_temperature_avg is None
    assert (d.sample_count, d.hours) == (45, 3)
    assert list(hours["hh"]) == ["00", "01", "02"]


def test_optional_tables_missing_mean_empty_frames_then_their_rows(wh):
    with wh.engine.connect() as conn:
        assert q.anomalies(conn, wh.tables, ["L1"], NOW - timedelta(days=1), NOW).empty
        assert q.quality_over_time(conn, wh.tables, NOW - timedelta(days=1)).empty
    wh.create_optional_tables()
    wh.insert(wh.tables.anomaly, [
        {"kind": "spike", "loc_id": "L1", "measure": "temperature",
         "hour_start": NOW - timedelta(hours=3), "hours": 1, "score": 7.5,
         "detail": json.dumps({"delta": 9}), "run_id": "r1", "detected_at": NOW},
        {"kind": "gap", "loc_id": "L2", "measure": "temperature",
         "hour_start": NOW - timedelta(hours=3), "hours": 2, "score": 1.0, "detail": "{}",
         "run_id": "r1", "detected_at": NOW}])
    base = datetime(2026, 12, 1, 9, tzinfo=UTC)
    wh.insert(wh.tables.quality_score, [
        {"flow": "modbus-capture", "subject": dev, "window_start": base + timedelta(minutes=m),
         "window_end": base + timedelta(minutes=m + 5), "completeness": 1.0, "validity": 1.0,
         "uniqueness": 1.0, "timeliness": 1.0, "overall": overall, "rows_in": 10,
         "run_id": "r", "recorded_at": NOW}
        for dev, m, overall in (("a", 0, 1.0), ("b", 10, 0.5), ("a", 70, 0.75))])
    with wh.engine.connect() as conn:
        found = q.anomalies(conn, wh.tables, ["L1"], NOW - timedelta(days=1), NOW)
        quality = q.quality_over_time(conn, wh.tables, NOW - timedelta(days=1))
    assert list(found["kind"]) == ["spike"] and found["score"].iloc[0] == 7.5
    assert found["hour_start"].iloc[0] == NOW - timedelta(hours=3)
    assert [(r.bucket_start.hour, r.batches, r.overall_avg, r.overall_min)
            for r in quality.itertuples()] == [(9, 2, 0.75, 0.5), (10, 1, 0.75, 0.75)]


def test_quarantine_counts_rows_and_reasons(wh):
    reasons = [{"column": "temperature", "check": "not_nullable", "value": "nan"}]
    wh.insert(wh.tables.quarantine, [
        {"source": "modbus-capture", "record": json.dumps({"loc_id": "L1"}),
         "reasons": json.dumps(reasons), "run_id": "r1",
         "quarantined_at": NOW - timedelta(hours=h)} for h in (1, 2, 200)] + [
        {"source": "s3-compaction", "record": "{}", "reasons": "not json", "run_id": None,
         "quarantined_at": NOW - timedelta(hours=1)}])
    since = NOW - timedelta(days=7)
    with wh.engine.connect() as conn:
        counts = q.quarantine_counts(conn, wh.tables, since)
        rows = q.quarantine_rows(conn, wh.tables, since, limit=10)
    assert dict(zip(counts["source"], counts["rows"], strict=True)) == {
        "modbus-capture": 2, "s3-compaction": 1}
    assert len(rows) == 3
    assert set(rows["reasons"]) == {"temperature: not_nullable (nan)", "not json"}


def test_compaction_backlog_per_district(wh):
    def obj(i: int, distrik: str, status: str) -> dict:
        return {"key": f"k{i}", "key_hash": f"{i:064d}", "distrik": distrik,
                "discovered_at": NOW, "compression_status": status, "attempts": 0}

    with wh.engine.connect() as conn:
        assert q.compaction_backlog(conn, wh.tables).empty
    statuses = [("D01", "PENDING")] * 3 + [("D01", "FAILED"), ("D01", "SUCCESS"),
                                           ("D02", "CLAIMED"), ("D03", "QUARANTINED")]
    wh.insert(wh.tables.s3_object, [obj(i, d, s) for i, (d, s) in enumerate(statuses)])
    with wh.engine.connect() as conn:
        df = q.compaction_backlog(conn, wh.tables)
    assert df.to_dict("records") == [
        {"district": "D01", "PENDING": 3, "CLAIMED": 0, "FAILED": 1, "backlog": 4},
        {"district": "D02", "PENDING": 0, "CLAIMED": 1, "FAILED": 0, "backlog": 1}]


def test_forward_backlog_shows_what_the_collectors_reported_per_sink(wh):
    from shopfloor.buffer.status import WarehouseWriter, backlog_rows
    from shopfloor.buffer.store import Backlog
    from shopfloor.dashboard.views import forward_backlog_status

    table = wh.tables.collector_backlog
    with wh.engine.begin() as conn:
        table.drop(conn)  # a warehouse from before the table: no report yet, no error
    with wh.engine.connect() as conn:
        assert q.forward_backlog(conn, wh.tables).empty
    write = WarehouseWriter(wh.engine, table)  # the reporter's writer creates it again
    oldest = NOW - timedelta(minutes=7)
    write(backlog_rows("line-2", [Backlog("landing:raw", 40, round(oldest.timestamp() * 1000)),
                                  Backlog("warehouse:db", 0, None)], 0.125, 3,
                       NOW - timedelta(seconds=20)))
    write(backlog_rows("line-1", [Backlog("warehouse:db", 5, round(NOW.timestamp() * 1000))],
                       0.5, 0, NOW - timedelta(seconds=30)))
    # the next pass of line-2: the landing drained a little (an upsert, not a new row)
    write(backlog_rows("line-2", [Backlog("landing:raw", 12, round(oldest.timestamp() * 1000))],
                       0.0625, 3, NOW - timedelta(seconds=10)))
    with wh.engine.connect() as conn:
        df = forward_backlog_status(q.forward_backlog(conn, wh.tables), NOW)
    assert [(r.collector, r.sink, r.backlog_samples, r.dropped_samples, r.buffer_fill_pct,
             r.oldest_age, r.reported) for r in df.itertuples()] == [
        ("line-1", "warehouse:db", 5, 0, 50.0, "0 s", "30 s ago"),
        ("line-2", "landing:raw", 12, 3, 6.25, "7 min", "10 s ago"),
        ("line-2", "warehouse:db", 0, 3, 12.5, "-", "20 s ago")]
    assert df["oldest_sample_at"].iloc[1] == oldest
    assert pd.isna(df["oldest_sample_at"].iloc[2])
    assert df["reported_at"].iloc[0] == NOW - timedelta(seconds=30)
