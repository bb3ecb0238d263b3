"""hourly-aggregation on the seed's own tables in PostgreSQL: ``flet_montrg.temperature``
as the hourly table, a raw table without ``ingested_at``, late data by reading time."""

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Column, DateTime, Float, MetaData, String, Table, insert, select, text

from blocks.bootstrap import connector_from_url
from flows.hourly_aggregation import hourly_aggregation, watermark_name
from shopfloor.db.engine import make_engine
from shopfloor.db.schema import configured_tables
from shopfloor.db.watermark import get_watermark
from shopfloor.modbus.sink import ReadingSink
from tasks.databases import init_databases
from tests.integration.aggregation.conftest import assert_hourly_equal, readings
from tests.integration.aggregation.seed_tables import SCHEMA, SEED_ENV, seed_database
from tests.integration.aggregation.test_aggregation_logical_time import run_scheduled_for

LOCS = ["L001", "L002", "L003"]
ZONE = "Asia/Makassar"  # WITA, the seed's zone: UTC+8, no DST
# The open hour of the first scheduled run: in the past, so the engine never waits.
H = (datetime.now(UTC) - timedelta(hours=8)).replace(minute=0, second=0, microsecond=0)

# An independent statement over the seed's raw table: WITA is UTC+8 all year.
EXPECTED_SQL = text(f"""
    SELECT loc_id, to_char(capture_dt + interval '8 hours', 'YYYYMMDD') AS ymd,
           to_char(capture_dt + interval '8 hours', 'HH24') AS hh,
           max(temperature) AS temperature_max, avg(temperature) AS temperature_avg,
           max(humidity) AS humidity_max, avg(humidity) AS humidity_avg,
           max(pcv_temperature) AS pcv_temperature_max,
           avg(pcv_temperature) AS pcv_temperature_avg, count(*) AS sample_count
    FROM {SCHEMA}.temperature_raw WHERE capture_dt >= :a AND capture_dt < :b
    GROUP BY 1, 2, 3""")


def seed_raw() -> Table:
    """The seed's raw table as its own writers see it (no ingested_at, no device)."""
    return Table("temperature_raw", MetaData(schema=SCHEMA),
                 Column("loc_id", String(32)), Column("capture_dt", DateTime),
                 *(Column(m, Float) for m in ("temperature", "humidity", "pcv_temperature")))


def naive(rows: list[dict]) -> list[dict]:
    """Rows as the seed's writers insert them: naive UTC, no ingested_at, no device."""
    return [{"loc_id": r["loc_id"], "capture_dt": r["capture_dt"].replace(tzinfo=None),
             "temperature": r["temperature"], "humidity": r["humidity"],
             "pcv_temperature": r["pcv_temperature"]} for r in rows]


@pytest.fixture
def seed(pg_server_url, prefect_harness, monkeypatch) -> Iterator[tuple]:
    for key, value in SEED_ENV.items():
        monkeypatch.setenv(key, value)
    with seed_database(pg_server_url) as url:
        engine = make_engine(url)
        block = f"seed-{uuid.uuid4().hex[:10]}"
        connector_from_url(url).save(block, overwrite=True)
        yield url, engine, block
        engine.dispose()


def expected(engine, start: datetime, end: datetime) -> dict[tuple, dict]:
    with engine.connect() as conn:
        rows = conn.execute(EXPECTED_SQL, {"a": start.replace(tzinfo=None),
                                           "b": end.replace(tzinfo=None)}).mappings()
        return {(r["loc_id"], r["ymd"], r["hh"]): {k: r[k] for k in r.keys()
                                                  if k not in ("loc_id", "ymd", "hh")}
                for r in rows}


def hourly(engine) -> dict[tuple, dict]:
    h = configured_tables().temperature_hourly
    with engine.connect() as conn:
        return {(r["loc_id"], r["ymd"], r["hh"]): dict(r)
                for r in conn.execute(select(h)).mappings()}


def label(t: datetime) -> tuple[str, str]:
    wita = t + timedelta(hours=8)
    return wita.strftime("%Y%m%d"), wita.strftime("%H")


def test_hourly_flow_writes_the_seed_table_and_finds_late_rows_by_reading_time(seed):
    url, engine, block = seed
    with engine.begin() as conn:
        conn.execute(insert(seed_raw()), naive(readings(LOCS, H - timedelta(hours=4),
                                                        H + timedelta(minutes=50))))
    # db init --upgrade: the shopfloor tables next to the seed's, the seed's hourly table
    # gets sample_count, updated_at and the rollup columns, the raw table a nullable device
    lines = list(init_databases(url=url, add_columns=True))
    added = [ln.split("added: ", 1)[1] for ln in lines if "added: " in ln]
    rollup = [f"ALTER TABLE {SCHEMA}.temperature ADD {m}_{a} "
              f"{'INTEGER' if a == 'count' else 'FLOAT(53)'}"
              for m in ("temperature", "humidity", "pcv_temperature")
              for a in ("count", "sum", "min")]
    assert sorted(added) == sorted([
        f"ALTER TABLE {SCHEMA}.temperature ADD sample_count INTEGER",
        f"ALTER TABLE {SCHEMA}.temperature ADD updated_at TIMESTAMP WITHOUT TIME ZONE",
        f"ALTER TABLE {SCHEMA}.temperature_raw ADD device VARCHAR(128)", *rollup,
        # the indexes the window reads need, by name (the seed's tables have none)
        "CREATE INDEX ix_temperature_raw_capture_dt ON temperature_raw",
        "CREATE INDEX ix_temperature_ymd_hh ON temperature"])
    with engine.connect() as conn:  # and still no ingested_at: the seed's writers go on
        cols = conn.execute(text(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = :s "
            "AND table_name = 'temperature_raw'"), {"s": SCHEMA}).scalars().all()
    assert "ingested_at" not in cols

    params = {"source_db": block, "target_db": block, "timezone": ZONE}
    hourly_aggregation(start=H - timedelta(hours=4), end=H, **params)
    assert_hourly_equal(hourly(engine), expected(engine, H - timedelta(hours=4), H))

    # incremental, scheduled for H:02: the last closed hour plus the hours holding rows
    # read within the allowance; nothing changed, so nothing is rewritten
    first = run_scheduled_for(H + timedelta(minutes=2), lateness_minutes=120, **params)
    assert first.is_completed(), first.message
    assert first.result()["upserted"] == 0 and first.result()["late_rows"] > 0
    with engine.connect() as conn:
        mark = datetime.fromisoformat(
            get_watermark(conn, configured_tables(), watermark_name(block)))
    # the newest reading up to the run's logical time, not the later ones
    assert H - timedelta(minutes=3) < mark <= H + timedelta(minutes=2)
    before = hourly(engine)

    inside = {"loc_id": "L002", "capture_dt": H - timedelta(minutes=55), "temperature": 99.5,
              "humidity": None, "pcv_temperature": 21.0}
    outside = {"loc_id": "L001", "capture_dt": H - timedelta(hours=3, minutes=55),
               "temperature": 98.5, "humidity": None, "pcv_temperature": 21.0}
    with engine.begin() as conn:
        conn.execute(insert(seed_raw()), naive([inside, outside]))
    second = run_scheduled_for(H + timedelta(hours=1, minutes=2), lateness_minutes=120,
                               **params)
    assert second.is_completed(), second.message
    got, want = hourly(engine), expected(engine, H - timedelta(hours=4), H + timedelta(hours=1))
    key_in = ("L002", *label(H - timedelta(hours=1)))
    key_out = ("L001", *label(H - timedelta(hours=4)))
    # inside the allowance: its hour is re-aggregated with the late row
    assert got[key_in]["sample_count"] == before[key_in]["sample_count"] + 1
    assert got[key_in]["temperature_max"] == 99.5
    # beyond it, in an hour no newer row touches: not found (a backfill's job), as documented
    assert got[key_out] == before[key_out]
    assert want[key_out]["sample_count"] == before[key_out]["sample_count"] + 1
    # everything else equals the independent statement, the newly closed hour H included
    assert ("L001", *label(H)) in got
    assert_hourly_equal({k: v for k, v in got.items() if k != key_out},
                        {k: v for k, v in want.items() if k != key_out})


def test_capture_writes_the_seed_raw_table_without_ingested_at(seed):
    from shopfloor.modbus.batch import batch_of
    from shopfloor.modbus.capture import CaptureStats
    from shopfloor.modbus.device import DeviceConfig
    from shopfloor.modbus.tags import TagSpec

    url, engine, _ = seed
    list(init_databases(url=url, add_columns=True))  # the nullable device column
    tag = TagSpec(name="t", column="temperature", address=0, data_type="float32")
    cfg = DeviceConfig(name="plc-seed", loc_id="L009", tags=(tag,))
    stats = CaptureStats(cfg.name)
    sink = ReadingSink(cfg, stats, "run-seed", engine=engine, tables=configured_tables())
    sink(batch_of(cfg, [H], {"temperature": [21.25]}, [""]))
    assert stats.rows_written == 1
    with engine.connect() as conn:
        row = conn.execute(text(f"SELECT loc_id, capture_dt, temperature, device FROM "
                                f"{SCHEMA}.temperature_raw")).one()
    assert tuple(row) == ("L009", H.replace(tzinfo=None), 21.25, "plc-seed")
