"""The tag model end to end (issue 26's first "done when"): a map of 12 tags of every
kind on 5 simulated devices (60 tags) captured into the warehouse, rolled up hourly and
daily, judged by the anomaly detector (one anomaly planted on a pressure tag), shown by
the dashboard's queries and exported to the lake, with the counts matched stage by
stage. One device reads its pressure out of range: that point is bad with its reason,
the same reading's other tags stay good."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine, func, insert, select

from shopfloor.db.schema import get_tables
from shopfloor.modbus.simulator import ModbusSimulator, SimulatedDevice
from shopfloor.modbus.tags import TagSpec
from tests.conftest import free_port

DEVICES = [f"e2e-plc{i}" for i in range(1, 6)]
OUT_OF_RANGE = "e2e-plc5"  # its line_pressure reads far above its range
PLANTED = "e2e-plc3"  # a spike planted in its line_pressure's history
SLOTS = 4
GOOD, BAD = 192, 0
HISTORY_DAYS = 40


def line_map() -> list[TagSpec]:
    """Twelve tags of every kind: floats of three widths and word orders, scaled and
    unsigned integers, 32 bits, a byte of a register, a bitfield, a coil, a discrete
    input and a string. ``line_pressure`` is the first with a range (the simulator's
    out-of-range fault takes it)."""
    return [
        TagSpec(name="line_pressure", column="line_pressure", address=0,
                data_type="float32", min_value=0, max_value=10, unit="bar"),
        TagSpec(name="air_temp", column="temperature", address=2, data_type="float32",
                byte_order="CDAB", min_value=-20, max_value=80, unit="degC"),
        TagSpec(name="air_rh", column="humidity", address=4, data_type="uint16", scale=0.1,
                min_value=0, max_value=100, unit="%"),
        TagSpec(name="pcv_temp", column="pcv_temperature", register_type="input", address=10,
                data_type="int16", scale=0.1, min_value=-40, max_value=150, unit="degC"),
        TagSpec(name="motor_current", column="motor_current", address=6, data_type="float16",
                min_value=0, max_value=500, unit="A"),
        TagSpec(name="flow_rate", column="flow_rate", address=8, data_type="float64",
                byte_order="DCBA", unit="m3/h"),
        TagSpec(name="energy", column="energy", address=12, data_type="uint32", unit="kWh"),
        TagSpec(name="vibration", column="vibration", address=14, data_type="int8l",
                unit="mm/s"),
        TagSpec(name="valve_steps", column="valve_steps", address=15, data_type="bitfield",
                bit=4, bit_count=6),
        TagSpec(name="running", column="running", register_type="coil", address=0,
                data_type="bool"),
        TagSpec(name="door_open", column="door_open", register_type="discrete", address=1,
                data_type="bool"),
        TagSpec(name="recipe", column="recipe", address=20, data_type="string", length=4),
    ]


NAMES = sorted(t.name for t in line_map())


@pytest.fixture(scope="module")
def line(prefect_harness: None) -> Iterator[list[str]]:
    """Five simulated devices serving :func:`line_map`, a ModbusDevice block each."""
    from blocks.modbus import ModbusDevice

    sims = {name: SimulatedDevice(free_port(), line_map(), phase=i,
                                  fault="out-of-range" if name == OUT_OF_RANGE else None)
            for i, name in enumerate(DEVICES)}
    with ModbusSimulator(list(sims.values())):
        for name, sim in sims.items():
            ModbusDevice(host="127.0.0.1", port=sim.port, loc_id=f"LOC-{name}",
                         timeout_seconds=0.5, retries=1, backoff_seconds=0.05,
                         register_map=sim.tags).save(name, overwrite=True)
        yield DEVICES


def _tag_ids(engine: Engine) -> dict[tuple[str, str], int]:
    tags = get_tables().tags
    with engine.connect() as conn:
        return {(r.device, r.name): int(r.id) for r in conn.execute(
            select(tags.c.device, tags.c.name, tags.c.id).where(tags.c.device.in_(DEVICES)))}


def _per_tag(engine: Engine, table, column, ids: dict[tuple[str, str], int]) -> dict[int, int]:
    with engine.connect() as conn:
        return {int(t): int(n) for t, n in conn.execute(
            select(table.c.tag_id, func.sum(column)).where(table.c.tag_id.in_(ids.values()))
            .group_by(table.c.tag_id))}


def _plant_history(engine: Engine, ids: dict[tuple[str, str], int], until: datetime) -> datetime:
    """One good sample an hour for the 40 days before ``until`` on every number tag of
    the planted device (the detector's history), with a spike on ``line_pressure`` two
    days before; returns the spike's hour."""
    t = get_tables().tag_samples
    spike = until - timedelta(days=2, hours=5)
    rows = []
    numbers = ["line_pressure", "motor_current", "flow_rate", "energy"]
    for k, name in enumerate(numbers):
        rng = np.random.default_rng(k)
        for h in range(HISTORY_DAYS * 24, 0, -1):
            ts = until - timedelta(hours=h)
            v = 6.0 + 2 * np.sin(2 * np.pi * ts.hour / 24) + rng.normal(0, 0.01)
            v += 3.0 if (name == "line_pressure" and ts == spike) else 0.0
            rows.append({"tag_id": ids[(PLANTED, name)], "ts": ts, "value": float(v),
                         "text_value": None, "quality": GOOD, "reason": None,
                         "ingested_at": datetime.now(UTC)})
    with engine.begin() as conn:
        conn.execute(insert(t), rows)
    return spike


def test_sixty_tags_from_capture_to_rollups_anomalies_dashboard_and_lake(line, pg_engine,
                                                                        target_db, tmp_path):
    from flows.anomaly_detection import detect_anomalies
    from flows.hourly_aggregation import hourly_aggregation
    from flows.modbus_capture import modbus_capture

    tables = get_tables()
    # 1. Capture: every tag of every device once per slot, each point judged alone.
    summary = modbus_capture(DEVICES, samples=SLOTS, interval_seconds=0.5,
                             target_db=target_db)
    assert {s["device"]: s["samples_ok"] for s in summary} == dict.fromkeys(DEVICES, SLOTS)
    ids = _tag_ids(pg_engine)
    assert sorted(ids) == sorted((d, n) for d in DEVICES for n in NAMES)  # 60 tags
    s = tables.tag_samples
    with pg_engine.connect() as conn:
        points = conn.execute(
            select(s.c.tag_id, s.c.ts, s.c.value, s.c.text_value, s.c.quality, s.c.reason)
            .where(s.c.tag_id.in_(ids.values()))).all()
    assert len(points) == 60 * SLOTS
    by_id = {i: k for k, i in ids.items()}
    bad = {(by_id[p.tag_id], p.reason) for p in points if p.quality != GOOD}
    assert bad == {((OUT_OF_RANGE, "line_pressure"), "out of range [0, 10]")}
    assert sum(p.quality == BAD for p in points) == SLOTS
    assert {p.text_value for p in points if by_id[p.tag_id][1] == "recipe"} == {"recipe"}
    assert {p.value for p in points if by_id[p.tag_id][1] in ("running", "door_open")} == {1.0}
    # The seed's table keeps its rule: plc5's readings are quarantined whole.
    raw = tables.temperature_raw
    with pg_engine.connect() as conn:
        readings = dict(conn.execute(select(raw.c.loc_id, func.count()).where(
            raw.c.loc_id.in_([f"LOC-{d}" for d in DEVICES])).group_by(raw.c.loc_id)).all())
    assert readings == {f"LOC-{d}": SLOTS for d in DEVICES if d != OUT_OF_RANGE}
    assert {s["device"]: s["rows_written"] for s in summary} == {
        d: 0 if d == OUT_OF_RANGE else SLOTS for d in DEVICES}
    first_slot = min(p.ts for p in points)

    # The planted device's history (one sample an hour for 40 days) and its spike.
    hour = first_slot.replace(minute=0, second=0, microsecond=0)
    spike = _plant_history(pg_engine, ids, hour)
    with pg_engine.connect() as conn:
        stored = {int(t): int(n) for t, n in conn.execute(
            select(s.c.tag_id, func.count()).where(s.c.tag_id.in_(ids.values()))
            .group_by(s.c.tag_id))}
    assert sum(stored.values()) == 60 * SLOTS + 4 * HISTORY_DAYS * 24

    # 2. Rollups: every sample of every tag in its hour and its day, counts matched.
    hourly_aggregation(source_db=target_db, target_db=target_db)
    assert _per_tag(pg_engine, tables.tag_hourly, tables.tag_hourly.c.sample_count,
                    ids) == stored
    assert _per_tag(pg_engine, tables.tag_daily, tables.tag_daily.c.sample_count,
                    ids) == stored
    good = {i: n - (SLOTS if i == ids[(OUT_OF_RANGE, "line_pressure")] else 0)
            for i, n in stored.items()}
    assert _per_tag(pg_engine, tables.tag_hourly, tables.tag_hourly.c.good_count, ids) == good

    # 3. Anomalies: the spike on the planted pressure tag is found, under its tag.
    found = detect_anomalies(start=(hour - timedelta(days=4)).replace(tzinfo=None),
                             end=hour.replace(tzinfo=None), target_db=target_db,
                             series="tags")
    assert found["new"] >= 1
    a = tables.anomaly
    with pg_engine.connect() as conn:
        rows = conn.execute(select(a.c.kind, a.c.loc_id, a.c.measure, a.c.hour_start)
                            .where(a.c.loc_id.in_([f"LOC-{d}" for d in DEVICES]))).all()
    pressure = f"tag:{ids[(PLANTED, 'line_pressure')]}"
    assert ("spike", f"LOC-{PLANTED}", pressure, spike) in {tuple(r) for r in rows}
    assert {r.measure for r in rows} == {pressure}  # nothing else on the line

    # 4. The dashboard: the picker finds the tag by location and unit, its trend holds
    # every captured point, and quality per tag counts the bad ones.
    from shopfloor.dashboard import queries as q

    end = max(p.ts for p in points) + timedelta(minutes=1)
    with pg_engine.connect() as conn:
        picked = q.tags(conn, tables, locations=[f"LOC-{OUT_OF_RANGE}"], units=["bar"])
        assert picked["name"].tolist() == ["line_pressure"]
        tag_id = int(picked["tag_id"].iloc[0])
        trend = q.tag_trend(conn, tables, [tag_id], first_slot, end, 60)
        quality = q.tag_quality(conn, tables, f"LOC-{OUT_OF_RANGE}", first_slot, end)
    assert int(trend["points"].sum()) == SLOTS and int(trend["bad"].sum()) == SLOTS
    assert float(trend["value_min"].min()) > 10  # drawn where it was, not hidden
    per_tag = quality.set_index("name")
    assert sorted(per_tag.index) == NAMES
    assert per_tag["points"].to_dict() == dict.fromkeys(NAMES, SLOTS)
    assert per_tag["bad"].to_dict() == {n: SLOTS if n == "line_pressure" else 0 for n in NAMES}

    # 5. The lake: every sample of the 60 tags once, in its tag's month partition.
    from prefect.filesystems import LocalFileSystem

    from flows.tag_lake_export import tag_lake_export
    from shopfloor.lake import protocol
    from shopfloor.storage import StorageLocation

    LocalFileSystem(basepath=str(tmp_path / "lake")).save("e2e-lake", overwrite=True)
    prefix = f"tags_{tmp_path.name[-12:]}".replace("-", "_")
    tag_lake_export(warehouse_db=target_db, lake="e2e-lake", prefix=prefix, lag_minutes=0)
    lake = StorageLocation("local", str(tmp_path / "lake"))
    exported = protocol.read_lake(lake, prefix, '"tag_id", "ts", "quality"').to_pylist()
    mine = [r for r in exported if r["tag_id"] in stored]
    assert len(mine) == len({(r["tag_id"], r["ts"]) for r in mine})  # each sample once
    lake_counts: dict[int, int] = {}
    for r in mine:
        lake_counts[r["tag_id"]] = lake_counts.get(r["tag_id"], 0) + 1
    assert lake_counts == stored
    assert sum(r["quality"] == BAD for r in mine) == SLOTS
    folders = {o.key.rsplit("/", 1)[0] for o in protocol.visible_files(lake, prefix)}
    pressure_id = ids[(PLANTED, "line_pressure")]
    assert {f for f in folders if f"/tag_id={pressure_id}/" in f + "/"}  # its own folders
