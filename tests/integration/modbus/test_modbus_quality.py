"""Capture leaves one quality_score row per device and run, replaced with every batch in
the batch's own transaction, with exact numbers."""

import time

from sqlalchemy import Engine, select

from shopfloor.db.schema import get_tables
from shopfloor.modbus.simulator import ModbusSimulator, SimulatedDevice, default_map
from tests.conftest import free_port


def _quality(engine: Engine, subject: str) -> list[dict]:
    q = get_tables().quality_score
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(
            select(q).where(q.c.subject == subject, q.c.flow == "modbus-capture")).mappings()]


def test_a_run_with_one_quarantined_reading_scores_it_exactly(target_db, pg_engine):
    from shopfloor.modbus.capture import CaptureStats, capture_device
    from shopfloor.modbus.client import DeviceConfig
    from shopfloor.modbus.sink import ReadingSink

    dev = SimulatedDevice(free_port(), default_map())
    cfg = DeviceConfig(name="quality-dev", loc_id="QUALITY", tags=tuple(dev.tags),
                       port=dev.port)
    stats = CaptureStats(cfg.name)
    sink = ReadingSink(cfg, stats, "run-quality", engine=pg_engine, tables=get_tables())
    seen: list[list[dict]] = []

    def one_bad_last(batch):
        sink(batch)
        seen.append(_quality(pg_engine, cfg.name))  # committed with the batch
        if len(seen) == 3:
            dev.fault = "nan"  # the 4th reading comes back NaN: quarantined

    with ModbusSimulator([dev]):
        capture_device(cfg, 4, 0.0, time.time(), one_bad_last, stats=stats, per_batch=1)

    assert [len(s) for s in seen] == [1, 1, 1, 1]  # one row per run, replaced per batch
    assert [s[0]["rows_in"] for s in seen] == [1, 2, 3, 4]
    (row,) = _quality(pg_engine, cfg.name)
    assert (row["rows_in"], row["rows_valid"], row["rows_quarantined"], row["rows_duplicate"],
            row["expected"]) == (4, 3, 1, 0, 4)
    assert (row["completeness"], row["validity"], row["uniqueness"], row["timeliness"]) == (
        1.0, 0.75, 1.0, 1.0)
    assert row["overall"] == 3.75 / 4
    assert row["run_id"] == "run-quality" and row["rule_version"]
    assert row["window_start"] <= row["window_end"]
    assert stats.rows_quarantined == 1 and stats.as_row()["q_validity"] == 0.75


def test_the_flow_table_shows_each_devices_scores(device_blocks, target_db, pg_engine):
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import delete

    from flows.modbus_capture import modbus_capture

    started = datetime.now(UTC) - timedelta(seconds=1)
    try:
        summary = modbus_capture(["mb-ok-1", "mb-bad-nan"], samples=2, interval_seconds=0.5,
                                 target_db=target_db)
    finally:  # the other flow tests of this database count these devices' rows
        raw, quarantine = get_tables().temperature_raw, get_tables().quarantine
        with pg_engine.begin() as conn:
            conn.execute(delete(raw).where(raw.c.loc_id == "LOC-ok-1",
                                           raw.c.capture_dt >= started))
            conn.execute(delete(quarantine).where(quarantine.c.source == "modbus:mb-bad-nan",
                                                  quarantine.c.quarantined_at >= started))
    by_device = {s["device"]: s for s in summary}
    assert by_device["mb-ok-1"]["q_validity"] == 1.0
    assert by_device["mb-bad-nan"]["q_validity"] == 0.0
    rows = _quality(pg_engine, "mb-bad-nan")
    assert [(r["rows_in"], r["rows_quarantined"]) for r in rows][-1] == (2, 2)
