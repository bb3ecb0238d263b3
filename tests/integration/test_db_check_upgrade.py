"""`shopfloor db check` and `db init --upgrade` against real PostgreSQL and SQLite
databases holding the seed's tables."""

import sqlite3

import pytest
from sqlalchemy import inspect, text

from shopfloor.db.engine import make_engine
from tasks.databases import check_databases, init_databases
from tests.integration.aggregation.seed_tables import SCHEMA, SEED_ENV, seed_database
from tests.integration.test_cli import run


def _reports(url: str, only=None) -> dict:
    (result,) = check_databases(url=url, only=only)
    return {r.key: r for r in result.reports}


def _tables(url: str, schema: str | None) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names(schema=schema))
    finally:
        engine.dispose()


@pytest.fixture
def seed_env(monkeypatch):
    for key, value in SEED_ENV.items():
        monkeypatch.setenv(key, value)


def test_check_reports_the_seed_schema_and_changes_nothing(pg_server_url, seed_env):
    with seed_database(pg_server_url) as url:
        engine = make_engine(url)
        with engine.begin() as conn:  # a location table of another shape
            conn.execute(text(f"CREATE TABLE {SCHEMA}.location (loc_id integer, name text)"))
        engine.dispose()
        reports = _reports(url)
        raw, hourly, loc = (reports[k] for k in ("temperature_raw", "temperature_hourly",
                                                 "location"))
        assert (raw.status, raw.addable) == ("INCOMPLETE", ["device"])
        assert raw.found == raw.needed - 1 == 5  # no ingested_at needed with the setting
        assert (hourly.name, hourly.status, hourly.addable) == (
            f"{SCHEMA}.temperature", "INCOMPLETE", ["sample_count", "updated_at", *(
                f"{m}_{a}" for m in ("temperature", "humidity", "pcv_temperature")
                for a in ("count", "sum", "min"))])
        assert reports["pipeline_watermark"].status == "MISSING"
        kinds = {(f.level, f.kind, f.column) for f in loc.findings}
        assert {("warning", "type", "loc_id"), ("error", "key", None),
                ("error", "missing column", "active")} <= kinds
        assert _tables(url, SCHEMA) == {"temperature_raw", "temperature", "location"}

        lines = list(init_databases(url=url, add_columns=True))
        assert f"--url                    added: ALTER TABLE {SCHEMA}.location ADD active " \
               "BOOLEAN DEFAULT true NOT NULL" in lines
        reports = _reports(url)
        assert reports["temperature_hourly"].status == "ok"
        assert reports["temperature_raw"].status == "ok"
        # a wrong key and a wrong type are reported, never altered
        assert [f.kind for f in reports["location"].findings] == ["type", "key"]
        assert not all(r.ok for r in reports.values())
        again = list(init_databases(url=url, add_columns=True))
        assert again[-3].endswith("no column missing")
        assert again[-1].endswith("tags created: 0")  # test_tag_migration.py: the rows


def _seed_sqlite(path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE temperature_raw (loc_id varchar(32) NOT NULL, capture_dt "
                "timestamp NOT NULL, temperature real, humidity real, pcv_temperature real, "
                "PRIMARY KEY (loc_id, capture_dt))")
    con.execute("CREATE TABLE temperature (loc_id varchar(32) NOT NULL, ymd varchar(8) NOT "
                "NULL, hh varchar(2) NOT NULL, temperature_max real, temperature_avg real, "
                "humidity_max real, humidity_avg real, pcv_temperature_max real, "
                "pcv_temperature_avg real, PRIMARY KEY (loc_id, ymd, hh))")
    con.execute("INSERT INTO temperature VALUES ('L1', '20260101', '07', 1, 1, 2, 2, 3, 3)")
    con.commit()
    con.close()


def test_upgrade_on_sqlite_adds_columns_and_keeps_the_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOPFLOOR_TABLE_TEMPERATURE_HOURLY", "temperature")
    monkeypatch.setenv("SHOPFLOOR_RAW_INGESTED_AT", "false")
    _seed_sqlite(tmp_path / "seed.db")
    url = f"sqlite+pysqlite:///{tmp_path / 'seed.db'}"
    only = ["temperature_raw", "temperature_hourly"]
    assert [r.status for r in _reports(url, only).values()] == ["INCOMPLETE", "INCOMPLETE"]
    lines = list(init_databases(url=url, add_columns=True))
    assert [r.status for r in _reports(url, only).values()] == ["ok", "ok"]
    # The hourly table gets the (ymd, hh) index the window checks read by, once.
    assert lines[-3].endswith("added: CREATE INDEX ix_temperature_ymd_hh ON temperature")
    assert lines[-2].endswith("tag samples from temperature_raw: temperature 0, humidity 0, "
                              "pcv_temperature 0 (0 added, 0 readings, 0 locations, 0 batches)")
    engine = make_engine(url)
    indexes = {i["name"]: i["column_names"] for i in inspect(engine).get_indexes("temperature")}
    engine.dispose()
    assert indexes["ix_temperature_ymd_hh"] == ["ymd", "hh"]
    assert list(init_databases(url=url, add_columns=True))[-3].endswith("no column missing")
    with sqlite3.connect(tmp_path / "seed.db") as con:
        row = con.execute("SELECT loc_id, temperature_max, humidity_avg, sample_count, "
                          "updated_at FROM temperature").fetchall()
    assert row == [("L1", 1.0, 2.0, None, None)]


def test_db_check_command_exits_non_zero_until_upgraded(tmp_path):
    _seed_sqlite(tmp_path / "seed.db")
    url = f"sqlite:///{tmp_path / 'seed.db'}"
    env = {"SHOPFLOOR_TABLE_TEMPERATURE_HOURLY": "temperature",
           "SHOPFLOOR_RAW_INGESTED_AT": "false"}
    args = ["db", "check", "--url", url, "--table", "temperature_hourly"]
    res = run(args, tmp_path, **env)
    assert res.returncode == 1, res.stderr
    assert "temperature_hourly   temperature  INCOMPLETE 9/20" in res.stdout
    assert "error: column sample_count (integer) is missing" in res.stdout
    res = run(["db", "init", "--url", url, "--upgrade"], tmp_path, **env)
    assert res.returncode == 0, res.stderr
    assert "added: ALTER TABLE temperature ADD sample_count INTEGER" in res.stdout
    assert "added: ALTER TABLE temperature ADD temperature_count INTEGER" in res.stdout
    res = run(args, tmp_path, **env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines()[-1] == "1 of 1 tables usable"
