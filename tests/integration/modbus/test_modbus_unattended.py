"""What a scheduled capture needs: windows, honest end states, events, gateway limits."""

import json
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from sqlalchemy import Engine, select

from shopfloor.db.schema import get_tables
from shopfloor.errors import ShopfloorError


def _times(engine: Engine, loc_id: str) -> list:
    t = get_tables().temperature_raw
    with engine.connect() as conn:
        return list(conn.scalars(select(t.c.capture_dt).where(t.c.loc_id == loc_id)
                                 .order_by(t.c.capture_dt)))


def _events(resource_id: str, run_id: str, want: int = 1) -> list[dict]:
    """Events about ``resource_id`` related to flow run ``run_id`` (they reach the API
    asynchronously: polled with a generous deadline)."""
    deadline = time.monotonic() + 120
    found: list[dict] = []
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            events = client.request("POST", "/events/filter", json={
                "filter": {"resource": {"id": [resource_id]}}, "limit": 50}).json()["events"]
            found = [e for e in events if run_id in json.dumps(e.get("related", []))]
            if len(found) >= want:
                break
            time.sleep(1)
    return found


def test_a_span_takes_every_slot_of_its_window(device_blocks, target_db, pg_engine):
    from flows.modbus_capture import modbus_capture

    before = len(_times(pg_engine, "LOC-ok-2"))
    (row,) = modbus_capture(["mb-ok-2"], span_seconds=3, interval_seconds=1.0,
                            target_db=target_db)
    assert (row["samples_ok"], row["samples_missed"], row["rows_written"]) == (3, 0, 3)
    times = _times(pg_engine, "LOC-ok-2")[before:]
    assert [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)] == [1, 1]


def test_one_dead_device_degrades_the_run_and_is_announced(device_blocks, target_db):
    from flows.modbus_capture import modbus_capture

    state = modbus_capture(["mb-ok-1", "mb-bad-refuse"], samples=2, interval_seconds=0.5,
                           target_db=target_db, return_state=True)
    assert state.is_completed() and state.name == "Degraded"
    assert "mb-bad-refuse (connection refused" in state.message
    rows = {r["device"]: r for r in state.result()}  # the summary is still the result
    assert rows["mb-ok-1"]["samples_ok"] == 2
    run_id = str(state.state_details.flow_run_id)
    (done,) = _events("shopfloor.device.mb-ok-1", run_id)
    assert done["event"] == "shopfloor.capture.completed"
    assert done["resource"]["shopfloor.district"] == "D7"
    assert done["payload"] == {"samples_ok": 2, "samples_expected": 2, "rows_written": 2,
                               "rows_quarantined": 0}
    (dead,) = _events("shopfloor.device.mb-bad-refuse", run_id)
    assert dead["event"] == "shopfloor.device.dead" and dead["payload"]["samples_ok"] == 0


def test_every_reading_quarantined_fails_the_run(device_blocks, target_db):
    from flows.modbus_capture import modbus_capture

    with pytest.raises(ShopfloorError, match="mb-bad-nan: all 2 readings quarantined"):
        modbus_capture(["mb-bad-nan"], samples=2, interval_seconds=0.5, target_db=target_db)


def test_a_healthy_run_is_plainly_completed(device_blocks, target_db):
    from flows.modbus_capture import modbus_capture

    state = modbus_capture(["mb-ok-1"], target_db=target_db, return_state=True)
    assert state.name == "Completed"


def test_landing_needs_a_district(device_blocks, simulator, raw_logs: Path):
    from blocks.modbus import ModbusDevice
    from flows.modbus_capture import modbus_capture

    dev = simulator["ok-1"]
    ModbusDevice(port=dev.port, loc_id="NODIST", register_map=dev.tags).save(
        "mb-no-district", overwrite=True)
    with pytest.raises(ShopfloorError, match="district on every device, missing on "
                                             "mb-no-district"):
        modbus_capture(["mb-no-district"], write_raw=False, land_json=True,
                       raw_logs="modbus-test-raw")
    assert not list(raw_logs.rglob("*.json"))


def test_a_held_gateway_limit_keeps_polls_off_the_gateway(device_blocks, simulator):
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.concurrency.sync import concurrency

    from flows.modbus_capture import modbus_capture
    from shopfloor.modbus.gateway import gateway_limit_name

    name = gateway_limit_name("127.0.0.1", simulator["ok-2"].port)
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    try:
        # another holder (a run in another process) has the gateway: every slot is missed
        with concurrency(name, occupy=1, strict=True):
            with pytest.raises(ShopfloorError, match=f"limit {name} busy"):
                modbus_capture(["mb-ok-2"], samples=2, interval_seconds=1.0, write_raw=False)
        # free again: the polls take the limit's slot and give it back
        # (a slot a loaded machine misses is not the point: at least one poll got through)
        (row,) = modbus_capture(["mb-ok-2"], samples=3, interval_seconds=1.0, write_raw=False)
        assert row["samples_ok"] >= 1
        with get_client(sync_client=True) as client:
            assert client.read_global_concurrency_limit_by_name(name).active_slots == 0
    finally:
        with get_client(sync_client=True) as client:
            client.delete_global_concurrency_limit_by_name(name)
