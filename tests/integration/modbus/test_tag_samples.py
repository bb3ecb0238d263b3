"""Every tag of a register map lands in ``tag_samples`` (docs/tags.md): captured from a
pymodbus simulator through the store-and-forward buffer into a real PostgreSQL, once
per (tag, time) however often it is written, each point with its own quality."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from shopfloor.db.schema import get_tables
from shopfloor.modbus.simulator import ModbusSimulator, SimulatedDevice
from shopfloor.modbus.tags import TagSpec
from tests.conftest import free_port

SLOTS = 3
GOOD, BAD = 192, 0


def plant_map() -> list[TagSpec]:
    """A map with a temperature, five other measures and a text tag. ``line_pressure``
    comes first: the simulator's out-of-range fault hits the first tag with a range."""
    def tag(name: str, address: int, **kw: object) -> TagSpec:
        return TagSpec(name=name, column=name, address=address, data_type="float32", **kw)

    return [
        tag("line_pressure", 0, min_value=0, max_value=10, unit="bar",
            description="Line pressure after the pump"),
        tag("temperature", 2, min_value=-20, max_value=80, unit="degC"),
        tag("motor_current", 4, min_value=0, max_value=200, unit="A"),
        tag("flow_rate", 6, unit="m3/h"),
        tag("vibration", 8, min_value=0, max_value=50, unit="mm/s"),
        tag("torque", 10, min_value=0, max_value=500, unit="Nm"),
        TagSpec(name="recipe", column="recipe", address=20, data_type="string", length=4),
    ]


NAMES = [t.name for t in plant_map()]


@pytest.fixture(scope="module")
def plant(prefect_harness: None) -> Iterator[dict[str, str]]:
    """Two simulated devices serving :func:`plant_map`, one healthy and one whose
    ``line_pressure`` reads far above its range; a ModbusDevice block for each."""
    from blocks.modbus import ModbusDevice

    devices = {"tags-ok": SimulatedDevice(free_port(), plant_map()),
               "tags-oor": SimulatedDevice(free_port(), plant_map(), fault="out-of-range")}
    with ModbusSimulator(list(devices.values())):
        for name, dev in devices.items():
            ModbusDevice(host="127.0.0.1", port=dev.port, loc_id=f"LOC-{name}",
                         timeout_seconds=0.5, retries=1, backoff_seconds=0.05,
                         register_map=dev.tags).save(name, overwrite=True)
        yield {name: f"LOC-{name}" for name in devices}


def _counts(engine: Engine, device: str) -> dict[str, int]:
    t = get_tables()
    s, tags = t.tag_samples, t.tags
    with engine.connect() as conn:
        return dict(conn.execute(
            select(tags.c.name, func.count()).select_from(s.join(tags, s.c.tag_id == tags.c.id))
            .where(tags.c.device == device).group_by(tags.c.name)).all())


def _points(engine: Engine, device: str) -> list[dict]:
    t = get_tables()
    s, tags = t.tag_samples, t.tags
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(
            select(tags.c.name, s.c.ts, s.c.value, s.c.text_value, s.c.quality, s.c.reason)
            .select_from(s.join(tags, s.c.tag_id == tags.c.id))
            .where(tags.c.device == device).order_by(s.c.ts, tags.c.name)).mappings()]


def test_every_tag_lands_once_per_slot_and_a_rerun_duplicates_nothing(plant, pg_engine,
                                                                      target_db):
    from flows.modbus_capture import modbus_capture

    summary = modbus_capture(["tags-ok"], samples=SLOTS, interval_seconds=0.5,
                             target_db=target_db)
    assert summary[0]["samples_ok"] == SLOTS and summary[0]["rows_written"] == SLOTS
    assert _counts(pg_engine, "tags-ok") == dict.fromkeys(NAMES, SLOTS)
    points = _points(pg_engine, "tags-ok")
    assert {p["quality"] for p in points} == {GOOD} and {p["reason"] for p in points} == {None}
    assert {p["text_value"] for p in points if p["name"] == "recipe"} == {"recipe"}
    assert all(p["value"] is None for p in points if p["name"] == "recipe")
    assert all(0 <= p["value"] <= 10 for p in points if p["name"] == "line_pressure")
    # The registry: one row per tag, with what the map says about it.
    tags = get_tables().tags
    with pg_engine.connect() as conn:
        rows = {r["name"]: r for r in conn.execute(
            select(tags).where(tags.c.device == "tags-ok")).mappings()}
    assert sorted(rows) == sorted(NAMES)
    pressure = rows["line_pressure"]
    assert (pressure["unit"], pressure["location"], pressure["data_type"],
            pressure["source_name"]) == ("bar", "LOC-tags-ok", "float32", "holding:0")
    assert pressure["description"] == "Line pressure after the pump"
    # temperature_raw keeps its shape: the readings, its three measure columns.
    raw = get_tables().temperature_raw
    with pg_engine.connect() as conn:
        temps = conn.execute(select(raw.c.capture_dt, raw.c.temperature)
                             .where(raw.c.loc_id == "LOC-tags-ok")).all()
    assert len(temps) == SLOTS
    by_time = {p["ts"]: p["value"] for p in points if p["name"] == "temperature"}
    assert {dt: v for dt, v in temps} == pytest.approx(by_time)

    # A second run adds its own slots and registers nothing twice.
    modbus_capture(["tags-ok"], samples=SLOTS, interval_seconds=0.5, target_db=target_db)
    assert _counts(pg_engine, "tags-ok") == dict.fromkeys(NAMES, 2 * SLOTS)
    with pg_engine.connect() as conn:
        assert conn.scalar(select(func.count()).where(tags.c.device == "tags-ok")) == len(NAMES)


@pytest.mark.parametrize("samples", [2, 100])  # the batch upsert, and COPY (700 points)
def test_a_replayed_batch_overwrites_instead_of_duplicating(plant, pg_engine, target_db,
                                                            samples):
    from shopfloor.modbus.capture import CaptureStats
    from shopfloor.modbus.client import DeviceConfig
    from shopfloor.modbus.readings import Reading, readings_batch
    from shopfloor.modbus.sink import ReadingSink

    device = f"replay-{samples}"
    cfg = DeviceConfig(name=device, loc_id=f"LOC-{device}", tags=tuple(plant_map()))
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    readings = [Reading(t0 + timedelta(seconds=k), {n: (f"r{k}" if n == "recipe" else 1.0 + k % 7)
                                                    for n in NAMES}) for k in range(samples)]
    batch = readings_batch(cfg, readings)
    for attempt in range(2):  # a forwarder killed before its cursor moved writes it again
        sink = ReadingSink(cfg, CaptureStats(device), f"run-{attempt}", engine=pg_engine,
                           tables=get_tables())
        sink.store(batch, sink.judge(batch))
        assert sink.points_written == samples * len(NAMES)
    assert _counts(pg_engine, device) == dict.fromkeys(NAMES, samples)
    recipes = [p["text_value"] for p in _points(pg_engine, device) if p["name"] == "recipe"]
    assert sorted(recipes) == sorted(f"r{k}" for k in range(samples))


def test_an_out_of_range_tag_is_bad_with_its_reason_and_the_rest_stays_good(plant, pg_engine,
                                                                           target_db):
    from flows.modbus_capture import modbus_capture

    modbus_capture(["tags-oor"], samples=SLOTS, interval_seconds=0.5, target_db=target_db,
                   return_state=True)  # degraded: every reading is quarantined
    points = _points(pg_engine, "tags-oor")
    assert _counts(pg_engine, "tags-oor") == dict.fromkeys(NAMES, SLOTS)
    bad = [p for p in points if p["quality"] != GOOD]
    assert {p["name"] for p in bad} == {"line_pressure"} and len(bad) == SLOTS
    assert {(p["quality"], p["reason"]) for p in bad} == {(BAD, "out of range [0, 10]")}
    assert all(p["value"] > 10 for p in bad)  # the value as it arrived is kept
    good = [p for p in points if p["name"] != "line_pressure"]
    assert len(good) == SLOTS * (len(NAMES) - 1)
    assert {(p["quality"], p["reason"]) for p in good} == {(GOOD, None)}
    # temperature_raw's quarantine is unchanged: the whole reading is rejected there.
    t = get_tables()
    with pg_engine.connect() as conn:
        assert conn.scalar(select(func.count()).where(
            t.temperature_raw.c.loc_id == "LOC-tags-oor")) == 0
        assert conn.scalar(select(func.count()).where(
            t.quarantine.c.source == "modbus:tags-oor")) == SLOTS


def test_tags_import_registers_every_configured_device(plant, pg_url):
    from typer.testing import CliRunner

    from deployments.cli import app

    runner = CliRunner()
    for _ in range(2):  # idempotent
        res = runner.invoke(app, ["tags", "import", "--url", pg_url])
        assert res.exit_code == 0, res.output
        lines = res.output.splitlines()
        assert f"tags-ok: {len(NAMES)} tags registered" in lines
        assert f"tags-oor: {len(NAMES)} tags registered" in lines
    res = runner.invoke(app, ["tags", "list", "--url", pg_url, "--location", "LOC-tags-oor"])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[-1] == f"{len(NAMES)} tags"
