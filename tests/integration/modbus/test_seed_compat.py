"""Seed compatibility (docs/tags.md, "temperature_raw beside the tags"): over a capture
from a pymodbus simulator, ``temperature_raw`` holds exactly the numbers of the tags whose
``column:`` names its columns, and the seed's aggregates (count, avg, max) over it equal
those over the tag samples. Real PostgreSQL and SQLite."""

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, select

from shopfloor.db.engine import init_db, make_engine
from shopfloor.db.schema import Tables, get_tables
from shopfloor.modbus.capture import CaptureStats, capture_device, schedule_anchor
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.simulator import ModbusSimulator, SimulatedDevice
from shopfloor.modbus.sink import ReadingSink
from shopfloor.modbus.tags import TagSpec
from shopfloor.tags.quality import GOOD
from tests.conftest import free_port
from tests.pg import throwaway_database

SLOTS = 6
# Tag names a plant gives them; their column: puts three of them into temperature_raw.
COLUMN_OF = {"oven_temp": "temperature", "room_rh": "humidity", "pcv_t": "pcv_temperature"}


def seed_map() -> list[TagSpec]:
    return [
        TagSpec(name="line_pressure", column="line_pressure", address=0, data_type="float32"),
        TagSpec(name="oven_temp", column="temperature", address=2, data_type="float32"),
        TagSpec(name="room_rh", column="humidity", address=4, data_type="float32"),
        TagSpec(name="pcv_t", column="pcv_temperature", address=6, data_type="float32"),
    ]


@pytest.fixture(scope="module")
def device() -> Iterator[SimulatedDevice]:
    dev = SimulatedDevice(free_port(), seed_map())
    with ModbusSimulator([dev]):
        yield dev


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


def test_temperature_raw_holds_the_numbers_of_its_column_tags(device, warehouse):
    engine, tables = warehouse
    cfg = DeviceConfig(name="seed-plc", loc_id="L-SEED", tags=tuple(seed_map()),
                       port=device.port, timeout_seconds=0.5, retries=1)
    stats = CaptureStats(cfg.name)
    sink = ReadingSink(cfg, stats, "run-seed", engine=engine, tables=tables)
    capture_device(cfg, SLOTS, 0.2, schedule_anchor(0.2), sink, stats=stats)
    assert stats.rows_written == stats.samples_ok > 0

    raw, s, tags = tables.temperature_raw, tables.tag_samples, tables.tags
    with engine.connect() as conn:
        ids = dict(conn.execute(select(tags.c.name, tags.c.id)
                                .where(tags.c.device == cfg.name)).all())
        rows = conn.execute(select(raw).where(raw.c.loc_id == cfg.loc_id)).mappings().all()
        points = {(r.tag_id, r.ts): r for r in conn.execute(select(s))}
    assert len(rows) == stats.rows_written
    for row in rows:  # every raw number is its column tag's sample, exactly
        for name, column in COLUMN_OF.items():
            point = points[(ids[name], row["capture_dt"])]
            assert (point.value, point.quality) == (row[column], GOOD)
    # ... and every good reading of the column tags is a raw row.
    times = {ts for (tag_id, ts) in points if tag_id == ids["oven_temp"]}
    assert times == {r["capture_dt"] for r in rows}

    # The seed's aggregates (count, avg, max per location) over temperature_raw equal
    # the same aggregates over the column tags' good samples.
    with engine.connect() as conn:
        for name, column in COLUMN_OF.items():
            c = raw.c[column]
            seed = conn.execute(select(func.count(c), func.avg(c), func.max(c))
                                .where(raw.c.loc_id == cfg.loc_id)).one()
            tag = conn.execute(select(func.count(s.c.value), func.avg(s.c.value),
                                      func.max(s.c.value))
                               .where(s.c.tag_id == ids[name], s.c.quality == GOOD)).one()
            assert seed[0] == tag[0] and seed[2] == tag[2]
            assert seed[1] == pytest.approx(tag[1], rel=1e-12)
