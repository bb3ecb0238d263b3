"""Fixtures for the aggregation flows: real databases behind real Prefect blocks."""

import random
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, insert, select, text

from blocks.bootstrap import connector_from_url
from shopfloor.db.engine import init_db, make_engine
from shopfloor.db.schema import Tables
from tests.pg import throwaway_database

MEASURES = ("temperature", "humidity", "pcv_temperature")


@dataclass
class Db:
    """A database with every table, saved as a SqlAlchemyConnector block named ``block``."""

    url: str
    engine: Engine
    tables: Tables
    block: str

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def insert_raw(self, rows: list[dict]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(self.tables.temperature_raw), rows)

    def hourly(self) -> dict[tuple, dict]:
        h = self.tables.temperature_hourly
        with self.engine.connect() as conn:
            return {(r["loc_id"], r["ymd"], r["hh"]): dict(r)
                    for r in conn.execute(select(h)).mappings()}

    def fail_writes_of_day(self, ymd: str) -> None:
        """A trigger that refuses hourly rows of one day: a real failing write."""
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(text(
                    "CREATE FUNCTION fail_hourly() RETURNS trigger AS $$ BEGIN "
                    f"IF NEW.ymd = '{ymd}' THEN RAISE EXCEPTION 'refused by test trigger'; "
                    "END IF; RETURN NEW; END $$ LANGUAGE plpgsql"))
                conn.execute(text(
                    "CREATE TRIGGER fail_hourly BEFORE INSERT OR UPDATE ON temperature_hourly "
                    "FOR EACH ROW EXECUTE FUNCTION fail_hourly()"))
            else:
                for op in ("INSERT", "UPDATE"):
                    conn.execute(text(
                        f"CREATE TRIGGER fail_hourly_{op} BEFORE {op} ON temperature_hourly "
                        f"WHEN NEW.ymd = '{ymd}' BEGIN "
                        "SELECT RAISE(ABORT, 'refused by test trigger'); END"))

    def allow_writes(self) -> None:
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("DROP TRIGGER fail_hourly ON temperature_hourly"))
                conn.execute(text("DROP FUNCTION fail_hourly()"))
            else:
                for op in ("INSERT", "UPDATE"):
                    conn.execute(text(f"DROP TRIGGER fail_hourly_{op}"))


def _clean(engine: Engine, tables: Tables) -> None:
    with engine.begin() as conn:
        for t in (tables.temperature_raw, tables.temperature_hourly, tables.location,
                  tables.pipeline_watermark, tables.quarantine, tables.quality_score,
                  tables.temperature_daily):
            conn.execute(t.delete())


def make_db(url: str) -> Db:
    engine = make_engine(url)
    tables = init_db(engine)
    _clean(engine, tables)
    block = f"agg-{uuid.uuid4().hex[:10]}"
    connector_from_url(url).save(block, overwrite=True)
    return Db(url, engine, tables, block)


def _url(kind: str, request, tmp_path) -> str:
    if kind == "sqlite":
        return f"sqlite+pysqlite:///{tmp_path / 'agg.db'}"
    if kind == "mariadb":
        return request.getfixturevalue("mariadb_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def any_db(request, tmp_path, prefect_harness) -> Iterator[Db]:
    db = make_db(_url(request.param, request, tmp_path))
    yield db
    _clean(db.engine, db.tables)
    db.engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path, prefect_harness) -> Iterator[Db]:
    """SQLite or PostgreSQL (where the failing-write triggers are written)."""
    db = make_db(_url(request.param, request, tmp_path))
    yield db
    _clean(db.engine, db.tables)
    db.engine.dispose()


@pytest.fixture(scope="session")
def second_pg_url(pg_server_url: str) -> Iterator[str]:
    """Another PostgreSQL database on the same server (the seed's IoT and HQ databases)."""
    with throwaway_database(pg_server_url) as url:
        yield url


@pytest.fixture
def two_pg(pg_url, second_pg_url, prefect_harness) -> Iterator[tuple[Db, Db]]:
    """A source and a target PostgreSQL database, both empty, as blocks."""
    dbs = make_db(pg_url), make_db(second_pg_url)
    yield dbs
    for db in dbs:
        _clean(db.engine, db.tables)
        db.engine.dispose()


@pytest.fixture
def sqlite_db(tmp_path, prefect_harness) -> Iterator[Db]:
    db = make_db(f"sqlite+pysqlite:///{tmp_path / 'other.db'}")
    yield db
    db.engine.dispose()


def readings(locs: list[str], start: datetime, end: datetime, step_minutes: int = 7,
             seed: int = 4, ingested_at: datetime | None = None) -> list[dict]:
    """Random readings every ``step_minutes`` per location, some humidity missing."""
    rnd = random.Random(seed)
    out, t = [], start
    ingested = ingested_at or datetime.now(UTC) - timedelta(days=1)
    while t < end:
        for loc in locs:
            out.append({
                "loc_id": loc, "capture_dt": t + timedelta(seconds=rnd.randint(0, 59)),
                "temperature": round(rnd.uniform(18, 32), 3),
                "humidity": None if rnd.random() < 0.1 else round(rnd.uniform(30, 70), 3),
                "pcv_temperature": round(rnd.uniform(20, 25), 3),
                "device": "plc-1", "ingested_at": ingested,
            })
        t += timedelta(minutes=step_minutes)
    return out


def expected_hourly(rows: list[dict], zone: str, first: datetime | None = None,
                    last: datetime | None = None) -> dict[tuple, dict]:
    """The hourly rows computed in Python with zoneinfo; wall-clock window [first, last)."""
    tz = ZoneInfo(zone)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        wall = r["capture_dt"].astimezone(tz)
        naive = wall.replace(tzinfo=None)
        if first is not None and not (first <= naive.replace(minute=0, second=0) < last):
            continue
        groups[(r["loc_id"], wall.strftime("%Y%m%d"), wall.strftime("%H"))].append(r)
    out = {}
    for key, rs in groups.items():
        row = {"sample_count": len(rs)}
        for m in MEASURES:
            vals = [r[m] for r in rs if r[m] is not None]
            row[f"{m}_max"] = max(vals) if vals else None
            row[f"{m}_avg"] = sum(vals) / len(vals) if vals else None
        out[key] = row
    return out


def assert_hourly_equal(got: dict[tuple, dict], expected: dict[tuple, dict],
                        rel: float = 1e-9) -> None:
    """Equal keys, counts and NULLs; floats to ``rel`` (MySQL stores FLOAT in 32 bits)."""
    assert set(got) == set(expected)
    for key, exp in expected.items():
        for col, value in exp.items():
            if value is None or col == "sample_count":
                assert got[key][col] == value, (key, col)
            else:
                assert got[key][col] == pytest.approx(value, rel=rel), (key, col)


@pytest.fixture
def warehouse_limit(prefect_harness):
    """The global concurrency limit `shopfloor deploy` creates, for one test."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name="shopfloor-warehouse-db", limit=1))
    yield "shopfloor-warehouse-db"
    with get_client(sync_client=True) as client:
        client.delete_global_concurrency_limit_by_name("shopfloor-warehouse-db")
