"""Communication loss and stale values as points (docs/tags.md, "Quality codes"): a
sample the device did not answer at all is a bad point per tag (``no answer``) and no
reading (no ``temperature_raw`` row, no quarantine, not landed), written once however
often it is replayed; a number unchanged for its tag's ``stale_after`` readings is
uncertain (``stale``). Real PostgreSQL and SQLite, a pymodbus simulator."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from shopfloor.db.engine import init_db, make_engine
from shopfloor.db.schema import Tables, get_tables
from shopfloor.modbus.capture import CaptureStats, capture_device, schedule_anchor
from shopfloor.modbus.client import DeviceConfig, device_plan
from shopfloor.modbus.readings import RawSample, decode_batch
from shopfloor.modbus.simulator import ModbusSimulator, SimulatedDevice
from shopfloor.modbus.sink import ReadingSink
from shopfloor.modbus.tags import TagSpec
from shopfloor.storage import StorageLocation
from shopfloor.tags.quality import BAD, GOOD, NO_ANSWER, STALE, UNCERTAIN
from tests.conftest import free_port
from tests.pg import throwaway_database

T0 = datetime(2026, 2, 1, tzinfo=UTC)
TAGS = (
    TagSpec(name="oven", column="temperature", address=0, data_type="float32",
            stale_after=2),
    TagSpec(name="pressure", column="line_pressure", address=2, data_type="float32"),
)


@pytest.fixture(params=["postgresql", "sqlite"])
def warehouse(request, tmp_path, pg_server_url) -> Iterator[tuple[Engine, Tables]]:
    def made(url: str) -> tuple[Engine, Tables]:
        engine = make_engine(url)
        return engine, init_db(engine, tables=get_tables())

    if request.param == "sqlite":
        engine, tables = made(f"sqlite:///{tmp_path / 'w.db'}")
        yield engine, tables
        engine.dispose()
    else:
        with throwaway_database(pg_server_url) as url:
            engine, tables = made(url)
            yield engine, tables
            engine.dispose()


def _points(engine: Engine, tables: Tables, device: str) -> list[dict]:
    s, tags = tables.tag_samples, tables.tags
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(
            select(tags.c.name, s.c.ts, s.c.value, s.c.quality, s.c.reason)
            .select_from(s.join(tags, s.c.tag_id == tags.c.id))
            .where(tags.c.device == device).order_by(tags.c.name, s.c.ts)).mappings()]


def _count(engine: Engine, table, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar()


def test_a_sample_nobody_answered_is_bad_points_only_and_a_replay_adds_nothing(
        warehouse, tmp_path):
    engine, tables = warehouse
    cfg = DeviceConfig(name="lossy", loc_id="L-LOSS", tags=TAGS)
    words = {0: [0x4120, 0, 0x3F80, 0]}  # oven 10.0, pressure 1.0 (float32, ABCD)
    answered = {0, 1, 4}
    samples = [RawSample(T0 + timedelta(seconds=k), words if k in answered else {})
               for k in range(5)]
    batch = decode_batch(cfg, device_plan(cfg), samples)
    stats = CaptureStats(cfg.name)
    for attempt in range(2):  # a forwarder killed before its cursor moved writes it again
        sink = ReadingSink(cfg, stats, f"run-{attempt}", engine=engine, tables=tables,
                           storage=StorageLocation("local", str(tmp_path / "raw")))
        sink.store(batch, sink.judge(batch))
        sink.land(batch, sink.judge(batch))
    points = _points(engine, tables, "lossy")
    assert len(points) == 5 * len(TAGS)
    lost = [p for p in points if p["quality"] == BAD]
    assert {(p["reason"], p["value"]) for p in lost} == {(NO_ANSWER, None)}
    assert sorted({p["ts"] for p in lost}) == [T0 + timedelta(seconds=k) for k in (2, 3)]
    assert all(p["quality"] == GOOD for p in points if p["ts"] in
               {T0 + timedelta(seconds=k) for k in answered})
    # no reading: raw holds the three answered samples, nothing is quarantined
    raw = tables.temperature_raw
    assert _count(engine, raw, raw.c.loc_id == "L-LOSS") == 3
    assert _count(engine, tables.quarantine) == 0
    assert (stats.rows_written, stats.rows_quarantined) == (6, 0)  # 3 per attempt
    quality = sink.quality
    assert (quality["rows_in"], quality["rows_valid"]) == (3, 3)
    # the landing holds what arrived: the three answered samples, under the first's name
    landed = [json.loads(line) for path in (tmp_path / "raw").rglob("*.json")
              for line in path.read_text().splitlines()]
    assert len(landed) == 3


def test_a_device_that_never_answers_gets_no_answer_points_through_the_buffer(
        device_blocks, target_db, pg_engine):
    """The store-and-forward path (the flow's default): what the forwarder writes."""
    from flows.modbus_capture import modbus_capture

    modbus_capture(["mb-bad-refuse"], samples=3, interval_seconds=0.2, target_db=target_db,
                   return_state=True)  # failed: no device gave a reading
    tables = get_tables()
    points = _points(pg_engine, tables, "mb-bad-refuse")
    slots = {p["ts"] for p in points}  # failed slots (the breaker may skip others)
    assert slots and len(points) == 4 * len(slots)  # every tag of the map, once a slot
    assert {(p["quality"], p["reason"], p["value"]) for p in points} == {
        (BAD, NO_ANSWER, None)}
    raw = tables.temperature_raw
    assert _count(pg_engine, raw, raw.c.loc_id == "LOC-bad-refuse") == 0
    q = tables.quarantine
    assert _count(pg_engine, q, q.c.source == "modbus:mb-bad-refuse") == 0


@pytest.fixture(scope="module")
def constant_device() -> Iterator[SimulatedDevice]:
    dev = SimulatedDevice(free_port(), list(TAGS), values={"oven": 21.5})
    with ModbusSimulator([dev]):
        yield dev


def test_a_constant_value_turns_uncertain_after_stale_after_readings(constant_device,
                                                                    warehouse):
    engine, tables = warehouse
    cfg = DeviceConfig(name="constant", loc_id="L-CONST", tags=TAGS,
                       port=constant_device.port, timeout_seconds=0.5, retries=1)
    stats = CaptureStats(cfg.name)
    sink = ReadingSink(cfg, stats, "run-stale", engine=engine, tables=tables)
    # one slot per batch: the runs of equal values carry from batch to batch
    capture_device(cfg, 6, 0.2, schedule_anchor(0.2), sink, stats=stats, per_batch=1)
    assert stats.samples_failed == 0 and stats.samples_ok >= 4
    oven = [p for p in _points(engine, tables, "constant") if p["name"] == "oven"]
    assert len(oven) == stats.samples_ok and {p["value"] for p in oven} == {21.5}
    assert [(p["quality"], p["reason"]) for p in oven] == [(GOOD, None)] * 2 + [
        (UNCERTAIN, STALE)] * (len(oven) - 2)
    # uncertain is not bad: every reading is in temperature_raw
    raw = tables.temperature_raw
    assert _count(engine, raw, raw.c.loc_id == "L-CONST") == stats.samples_ok

    # The next run (a new sink, as every hourly run has) continues the count from the
    # samples written: its first readings are stale at once.
    nxt = CaptureStats(cfg.name)
    sink = ReadingSink(cfg, nxt, "run-stale-2", engine=engine, tables=tables)
    capture_device(cfg, 2, 0.2, schedule_anchor(0.2), sink, stats=nxt, per_batch=1)
    oven = [p for p in _points(engine, tables, "constant") if p["name"] == "oven"]
    assert len(oven) == stats.samples_ok + nxt.samples_ok
    assert {p["quality"] for p in oven[stats.samples_ok:]} == {UNCERTAIN}


def test_a_replay_by_a_new_sink_gives_the_same_stale_verdicts(warehouse):
    """A forwarder killed after its write and before its cursor moved writes the batch
    again from a new process: the runs are read back from the samples before it."""
    engine, tables = warehouse
    cfg = DeviceConfig(name="replayed", loc_id="L-REPLAY", tags=TAGS)
    words = {0: [0x41AC, 0, 0x3F80, 0]}  # oven 21.5 every time, pressure 1.0
    plan = device_plan(cfg)
    batches = [decode_batch(cfg, plan, [RawSample(T0 + timedelta(seconds=k), words)
                                        for k in range(start, start + 2)])
               for start in (0, 2)]

    def write(batch, run: str) -> None:
        sink = ReadingSink(cfg, CaptureStats(cfg.name), run, engine=engine, tables=tables)
        sink.store(batch, sink.judge(batch))

    write(batches[0], "first")
    write(batches[1], "first-b")
    first = _points(engine, tables, "replayed")
    write(batches[1], "replay")  # the second batch again, by a fresh sink
    assert _points(engine, tables, "replayed") == first
    oven = [p["quality"] for p in first if p["name"] == "oven"]
    assert oven == [GOOD, GOOD, UNCERTAIN, UNCERTAIN]
