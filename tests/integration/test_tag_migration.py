"""`shopfloor db init --upgrade` on a warehouse made by the previous release (commit
09745b1, before tags): every reading of ``temperature_raw`` arrives in ``tag_samples``
with its values, nothing is lost, a second run adds nothing, and a migration stopped
half-way goes on where it stopped (docs/tags.md, "Moving an installation to tags").
Real PostgreSQL and SQLite (and MariaDB when one is reachable)."""

import math
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, insert, inspect, select, text
from sqlalchemy.engine import make_url

from shopfloor.db.engine import make_engine
from shopfloor.db.schema import get_tables
from shopfloor.tags.migrate import migrate_raw
from shopfloor.tags.quality import BAD, GOOD, NO_VALUE
from shopfloor.tags.registry import TagInfo, register_tags
from tests.integration.test_cli import run
from tests.pg import throwaway_database

RELEASE = Path(__file__).with_name("previous_release")
LOCATIONS = ("L001", "L002", "L003")
READINGS = 40  # per location
T0 = datetime(2026, 3, 1, tzinfo=UTC)
MEASURES = ("temperature", "humidity", "pcv_temperature")


def _old_schema(engine: Engine, dialect: str) -> None:
    """The previous release's tables, from its DDL (one statement at a time)."""
    ddl = (RELEASE / f"{dialect}.sql").read_text()
    body = "\n".join(ln for ln in ddl.splitlines() if not ln.startswith("--"))
    with engine.begin() as conn:
        for statement in body.split(";"):
            if statement.strip():
                conn.execute(text(statement))


def _raw_rows() -> list[dict]:
    """Known readings: three locations, a NULL now and then (seed rows had them), a
    device on some, each with its own ingested_at."""
    rows = []
    for n, loc in enumerate(LOCATIONS):
        for k in range(READINGS):
            at = T0 + timedelta(seconds=5 * k)
            rows.append({
                "loc_id": loc, "capture_dt": at,
                "temperature": None if k % 13 == 5 else 20.0 + n + k / 8,
                "humidity": None if k % 11 == 3 else 40.0 + k / 3,
                "pcv_temperature": -1.5 * k if k % 2 else 0.1 * n,
                "device": f"plc-{loc}" if n else None,
                "ingested_at": at + timedelta(minutes=1 + k % 7)})
    return rows


@contextmanager
def _mariadb_database() -> Iterator[str]:
    """A fresh database on the MariaDB/MySQL server of 127.0.0.1:3306, else skip."""
    server = os.environ.get("SHOPFLOOR_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/")
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"shopfloor_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE `{name}`"))
    except Exception as exc:  # noqa: BLE001 - absent or refusing us: skipped
        admin.dispose()
        pytest.skip(f"MariaDB/MySQL not usable: {exc}")
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@pytest.fixture(params=["postgresql", "sqlite",
                        pytest.param("mysql", marks=pytest.mark.mariadb)])
def old_warehouse(request, tmp_path, pg_server_url) -> Iterator[tuple[str, Engine]]:
    """A warehouse the previous release made and filled: its URL and an engine."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'warehouse.db'}"
        yield from _filled(url, "sqlite")
    elif request.param == "mysql":
        with _mariadb_database() as url:
            yield from _filled(url, "mysql")
    else:
        with throwaway_database(pg_server_url) as url:
            yield from _filled(url, "postgresql")


def _filled(url: str, dialect: str) -> Iterator[tuple[str, Engine]]:
    engine = make_engine(url)
    try:
        _old_schema(engine, dialect)
        t = get_tables()
        with engine.begin() as conn:
            conn.execute(insert(t.temperature_raw), _raw_rows())
            conn.execute(insert(t.location), [{"loc_id": loc, "active": True}
                                              for loc in LOCATIONS])
        yield url, engine
    finally:
        engine.dispose()


def _samples(engine: Engine) -> dict[tuple[str, str, datetime], dict]:
    """Every sample by (location, tag name, time)."""
    t = get_tables()
    s, tags = t.tag_samples, t.tags
    with engine.connect() as conn:
        rows = conn.execute(
            select(tags.c.device, tags.c.location, tags.c.name, s.c.ts, s.c.value,
                   s.c.text_value, s.c.quality, s.c.reason, s.c.ingested_at)
            .select_from(s.join(tags, s.c.tag_id == tags.c.id))).mappings().all()
    return {(r["location"], r["name"], r["ts"]): dict(r) for r in rows}


def _assert_every_reading_arrived(engine: Engine) -> None:
    samples = _samples(engine)
    expected = _raw_rows()
    assert len(samples) == len(expected) * len(MEASURES)  # nothing lost, nothing added
    for row in expected:
        for m in MEASURES:
            got = samples[(row["loc_id"], m, row["capture_dt"])]
            assert got["device"] == f"loc:{row['loc_id']}"
            # Stamped when copied (new to tag_samples then), not the reading's own: the
            # watermarks of the lake export and the tag rollups may be past that.
            assert got["ingested_at"] > row["ingested_at"]
            assert got["text_value"] is None
            if row[m] is None:
                assert (got["value"], got["quality"], got["reason"]) == (None, BAD, NO_VALUE)
            else:
                assert math.isclose(got["value"], row[m], rel_tol=0, abs_tol=0)
                assert (got["quality"], got["reason"]) == (GOOD, None)


def test_upgrade_moves_every_reading_of_the_previous_release_into_tag_samples(
        old_warehouse, tmp_path):
    url, engine = old_warehouse
    assert "tag_samples" not in inspect(engine).get_table_names()
    res = run(["db", "init", "--url", url, "--upgrade"], tmp_path)
    assert res.returncode == 0, res.stderr
    n = len(LOCATIONS) * READINGS
    nulls = {m: sum(r[m] is None for r in _raw_rows()) for m in MEASURES}
    assert nulls["temperature"] > 0 and nulls["humidity"] > 0
    assert (f"tag samples from temperature_raw: temperature {n}, humidity {n}, "
            f"pcv_temperature {n} ({3 * n} added, {n} readings, 3 locations, 3 batches)"
            in res.stdout), res.stdout
    assert "tags created: 9" in res.stdout
    _assert_every_reading_arrived(engine)
    t = get_tables()
    with engine.connect() as conn:  # the seed's tables keep every row
        assert conn.execute(select(func.count()).select_from(t.temperature_raw)).scalar() == n
        assert conn.execute(select(func.count()).select_from(t.location)).scalar() == 3
        tags = conn.execute(select(t.tags.c.device, t.tags.c.name, t.tags.c.source_name)
                            .order_by(t.tags.c.device, t.tags.c.name)).all()
    assert tags[:3] == [("loc:L001", m, f"temperature_raw.{m}") for m in sorted(MEASURES)]

    again = run(["db", "init", "--url", url, "--upgrade"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert (f"temperature 0, humidity 0, pcv_temperature 0 (0 added, {n} readings"
            in again.stdout), again.stdout
    assert "tags created: 0" in again.stdout
    _assert_every_reading_arrived(engine)


class Stop(Exception):
    pass


def test_a_migration_stopped_half_way_goes_on_where_it_stopped(old_warehouse):
    url, engine = old_warehouse
    from shopfloor.db.engine import init_db

    tables = init_db(engine)

    def crash(loc_id: str, batch: int) -> None:
        if batch == 4:  # L001 done in 3 batches of 16, 16, 8; L002's first committed
            raise Stop

    with pytest.raises(Stop):
        migrate_raw(engine, tables, batch_rows=16, after_batch=crash)
    assert len(_samples(engine)) == (READINGS + 16) * len(MEASURES)
    report = migrate_raw(engine, tables, batch_rows=16)
    assert sum(report.samples.values()) == (2 * READINGS - 16) * len(MEASURES)
    assert report.tags_created == 3  # L001's and L002's were there already
    _assert_every_reading_arrived(engine)
    assert sum(migrate_raw(engine, tables, batch_rows=7).samples.values()) == 0


def test_readings_the_tag_capture_wrote_already_are_not_copied_again(old_warehouse):
    """A reading written by the tag-aware capture has its device's samples (same
    transaction): the migration leaves it out, whatever its batch."""
    url, engine = old_warehouse
    from shopfloor.db.engine import init_db

    tables = init_db(engine)
    captured = T0 + timedelta(seconds=5 * 7)
    with engine.begin() as conn:
        ids = register_tags(conn, tables.tags, [TagInfo(
            "oven", "plc-L002", "L002", "degC", "float32", None, "holding:0")])
        conn.execute(insert(tables.tag_samples), [{
            "tag_id": ids[("plc-L002", "oven")], "ts": captured, "value": 1.0,
            "quality": GOOD, "ingested_at": captured}])
    report = migrate_raw(engine, tables, batch_rows=5)
    assert report.samples == dict.fromkeys(MEASURES, len(LOCATIONS) * READINGS - 1)
    samples = _samples(engine)
    assert ("L002", "temperature", captured) not in samples
    assert ("L001", "temperature", captured) in samples


def test_a_seed_raw_table_with_timestamptz_migrates_utc_instants(pg_server_url):
    """The seed's raw table may hold ``timestamp with time zone`` and its database a
    session zone of Seoul: the samples keep the instants (tag_samples holds UTC)."""
    with throwaway_database(pg_server_url) as url:
        engine = make_engine(url)
        try:
            with engine.begin() as conn:
                name = conn.execute(text("SELECT current_database()")).scalar()
                conn.execute(text(f'ALTER DATABASE "{name}" SET timezone = \'Asia/Seoul\''))
                conn.execute(text(
                    "CREATE TABLE temperature_raw (loc_id varchar(32) NOT NULL, capture_dt "
                    "timestamptz NOT NULL, temperature double precision, humidity double "
                    "precision, pcv_temperature double precision, PRIMARY KEY (loc_id, "
                    "capture_dt))"))
                conn.execute(text(
                    "INSERT INTO temperature_raw VALUES "
                    "('L9', '2026-03-01 00:00:00+00', 1.5, 2.5, 3.5), "
                    "('L9', '2026-03-01 23:30:00+00', 4.5, NULL, 6.5)"))
            engine.dispose()  # new sessions take the database's zone
            tables = get_tables(raw_ingested_at=False)
            from shopfloor.db.engine import init_db

            init_db(engine, tables=tables)
            report = migrate_raw(engine, tables)
            assert report.samples == dict.fromkeys(MEASURES, 2)
            samples = _samples(engine)
            assert samples[("L9", "temperature", T0)]["value"] == 1.5
            assert samples[("L9", "temperature", T0 + timedelta(hours=23.5))]["value"] == 4.5
            assert samples[("L9", "humidity", T0 + timedelta(hours=23.5))]["reason"] == NO_VALUE
        finally:
            engine.dispose()
