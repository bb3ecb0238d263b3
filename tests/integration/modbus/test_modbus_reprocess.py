"""reprocess-raw: a changed limit judged again over landed raw data, replaced downstream."""

import json
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, select

from shopfloor.db.schema import get_tables


def _state(engine: Engine, raw_logs: Path) -> dict:
    """Everything reprocess may change, without the times it stamps on rows."""
    t = get_tables()
    with engine.connect() as conn:
        r = t.temperature_raw
        raw = [tuple(x) for x in conn.execute(
            select(r.c.capture_dt, r.c.temperature, r.c.humidity)
            .where(r.c.loc_id == "LOC-rp").order_by(r.c.capture_dt))]
        q = t.quarantine
        quarantine = sorted((x.record, x.reasons, x.source_key, x.source_line)
                            for x in conn.execute(select(q).where(q.c.source == "modbus:mb-rp")))
        h = t.temperature_hourly
        hourly = [dict(r._mapping) for r in conn.execute(
            select(h).where(h.c.loc_id == "LOC-rp").order_by(h.c.ymd, h.c.hh))]
    landed = {p.relative_to(raw_logs).as_posix(): p.read_bytes()
              for p in sorted(raw_logs.rglob("*.json"))}
    return {"raw": raw, "quarantine": quarantine, "hourly": hourly, "landed": landed}


def test_a_lowered_limit_rejects_landed_readings_everywhere_and_a_rerun_changes_nothing(
        simulator, device_blocks, target_db, pg_engine, raw_logs: Path):
    from blocks.modbus import ModbusDevice
    from flows.hourly_aggregation import hourly_aggregation
    from flows.modbus_capture import modbus_capture
    from flows.reprocess import reprocess_raw

    block = ModbusDevice.load("mb-ok-1")
    block.loc_id, block.district = "LOC-rp", "D8"
    block.save("mb-rp", overwrite=True)
    modbus_capture(["mb-rp"], samples=4, interval_seconds=1.0, target_db=target_db,
                   land_json=True, raw_logs="modbus-test-raw")
    before = _state(pg_engine, raw_logs)
    temps = [r[1] for r in before["raw"]]
    assert len(temps) == 4 and not before["quarantine"]
    start = min(r[0] for r in before["raw"]).replace(minute=0, second=0, microsecond=0)
    end = max(r[0] for r in before["raw"]) + timedelta(hours=1)
    hourly_aggregation(start=start, end=end, source_db=target_db, target_db=target_db)
    assert sum(r["sample_count"] for r in _state(pg_engine, raw_logs)["hourly"]) == 4

    # the rule changes: readings above the new limit are no longer valid
    limit = sorted(temps)[1]  # two or more readings stay valid, the rest are rejected
    block.register_map = [t.model_copy(update={"max_value": limit})
                          if t.column == "temperature" else t for t in block.register_map]
    block.save("mb-rp", overwrite=True)
    kwargs = {"start": start, "end": end, "devices": ["mb-rp"], "raw_logs": "modbus-test-raw",
              "target_db": target_db, "hourly_source_db": target_db,
              "hourly_target_db": target_db}
    first = reprocess_raw(**kwargs)
    after = _state(pg_engine, raw_logs)

    keep = [r for r in before["raw"] if r[1] <= limit]
    hot = [r for r in before["raw"] if r[1] > limit]
    assert hot and first["rows_valid_before"] == 4 and first["rows_rejected_before"] == 0
    assert (first["rows_valid_after"], first["rows_rejected_after"]) == (len(keep), len(hot))
    assert after["raw"] == keep
    assert len(after["quarantine"]) == len(hot)
    for record, reasons, key, line in after["quarantine"]:
        assert key in after["landed"] and line >= 1
        landed = json.loads(after["landed"][key].decode().splitlines()[line - 1])
        assert landed["verdict"] == "rejected" and landed["temperature"] > limit
        assert json.loads(record)["temperature"] == landed["temperature"]
        assert json.loads(reasons)[0]["column"] == "temperature"
    lines = [json.loads(x) for body in after["landed"].values()
             for x in body.decode().splitlines()]
    assert sorted(ln["temperature"] for ln in lines if ln["verdict"] == "valid") == sorted(
        r[1] for r in keep)
    assert sum(r["sample_count"] for r in after["hourly"]) == len(keep)
    assert max(r["temperature_max"] for r in after["hourly"]) <= limit
    # an object is rewritten when a verdict in it changed (a batch may span two objects)
    assert first["objects_rewritten"] == sum(
        b"rejected" in body for body in after["landed"].values()) >= 1

    second = reprocess_raw(**kwargs)
    assert second["objects_rewritten"] == 0
    assert _state(pg_engine, raw_logs) == after
