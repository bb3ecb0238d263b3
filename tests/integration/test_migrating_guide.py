"""docs/migrating.md, run as written against seed-shaped databases.

Three PostgreSQL databases stand in for the seed's: the IoT database (``flet_montrg.
temperature_raw`` with the seed's own columns: ``sensor_id``, ``t1``..``t6`` as text, no
``ingested_at``), the HQ database (the seed's ``flet_montrg.temperature``) and the
metadata database (the seed's S3 registry ``pama.s3_keys``; PostgreSQL stands in for SQL
Server there). The guide's view SQL and every command of its switch-over block run
exactly as the guide prints them; then the results are checked against independent SQL.
"""

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.pg import throwaway_database

pytestmark = pytest.mark.usefixtures("prefect_harness")

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "migrating.md"
MAIN = "import sys; from deployments.cli import main; sys.argv[0] = 'shopfloor'; main()"

IOT_DDL = (
    "CREATE SCHEMA flet_montrg",
    "CREATE TABLE flet_montrg.temperature_raw (ymd varchar(8) NOT NULL, "
    "hmsf varchar(12) NOT NULL, sensor_id varchar(32) NOT NULL, device_id varchar(32), "
    "capture_dt timestamptz NOT NULL, t1 varchar(16), t2 varchar(16), t3 varchar(16), "
    "t4 varchar(16), t5 varchar(16), t6 varchar(16), upload_yn char(1), "
    "upload_dt timestamptz, extract_time timestamptz, "
    "PRIMARY KEY (capture_dt, ymd, hmsf, sensor_id))",
)
HQ_DDL = (
    "CREATE SCHEMA flet_montrg",
    "CREATE TABLE flet_montrg.temperature (ymd varchar(8) NOT NULL, hour integer NOT NULL, "
    "sensor_id varchar(32) NOT NULL, pcv_temperature_max numeric, pcv_temperature_min numeric, "
    "pcv_temperature_avg numeric, temperature_max numeric, temperature_min numeric, "
    "temperature_avg numeric, humidity_max numeric, humidity_min numeric, humidity_avg numeric, "
    "calc_dt timestamptz, PRIMARY KEY (ymd, hour, sensor_id))",
)
PAMA_DDL = (
    "CREATE SCHEMA pama",
    "CREATE TABLE pama.s3_keys (id SERIAL PRIMARY KEY, key varchar(1024) NOT NULL, "
    "compression_run_id varchar(64), compression_status varchar(16))",
)
# 2025-08-21 00:00-02:00 in KST (UTC+9) is 2025-08-20 15:00-17:00 UTC.
RAW = [
    # sensor, device, capture_dt (UTC), t1, t2, t3
    ("TEMPIOT-A001", "dev-1", "2025-08-20 15:00:05+00", "21.5", "55.0", "30.25"),
    ("TEMPIOT-A001", "dev-1", "2025-08-20 15:30:05+00", "22.5", "57.0", "31.75"),
    ("TEMPIOT-A001", "dev-1", "2025-08-20 16:10:00+00", "", "58.5", "32.0"),  # t1 empty
    ("TEMPIOT-A002", "dev-2", "2025-08-20 15:59:59+00", "19.0", "61.0", "29.0"),
    ("TEMPIOT-A002", "dev-2", "2025-08-20 16:00:00+00", "18.0", "63.0", "28.5"),
    ("TEMPIOT-A002", "dev-2", "2025-08-20 17:00:00+00", "30.0", "40.0", "40.0"),  # next hour
]
REGISTRY = [
    ("BRCB/2025/08/20/log-1.json", "run-7", "SUCCESS"),
    ("BRCB/2025/08/20/log-2.json", "run-8", "CLAIMED"),  # a claim of a run that is gone
    ("BRCG/2025/08/20/log-3.json", None, "PENDING"),
    ("BRCG/2025/08/20/log-4.json", "run-9", "FAILED"),
]


def guide_blocks(lang: str) -> list[str]:
    """The fenced blocks of ``lang`` after the guide-test marker, in order."""
    body = GUIDE.read_text().split("<!-- guide-test", 1)[1]
    return re.findall(rf"```{lang}\n(.*?)```", body, flags=re.S)


def guide_commands() -> list[str]:
    """The switch-over block's commands: continuation lines joined, comments dropped."""
    joined = guide_blocks("bash")[0].replace("\\\n", " ")
    return [ln.strip() for ln in joined.splitlines()
            if ln.strip() and not ln.strip().startswith("#")]


@pytest.fixture
def databases(pg_server_url: str) -> Iterator[dict[str, str]]:
    """The three seed databases, fresh, dropped at the end."""
    with ExitStack() as stack:
        urls = {role: stack.enter_context(throwaway_database(pg_server_url, f"guide_{role}"))
                for role in ("iot", "hq", "pama")}
        _create_seed_tables(urls)
        yield urls


def _create_seed_tables(urls: dict[str, str]) -> None:
    for role, ddl in (("iot", IOT_DDL), ("hq", HQ_DDL), ("pama", PAMA_DDL)):
        engine = create_engine(urls[role])
        with engine.begin() as conn:
            for statement in ddl:
                conn.execute(text(statement))
        engine.dispose()


def _fill(urls: dict[str, str]) -> None:
    iot = create_engine(urls["iot"])
    with iot.begin() as conn:
        for i, (sensor, device, ts, t1, t2, t3) in enumerate(RAW):
            conn.execute(text(
                "INSERT INTO flet_montrg.temperature_raw (ymd, hmsf, sensor_id, device_id, "
                "capture_dt, t1, t2, t3, upload_yn) VALUES (:ymd, :hmsf, :s, :d, "
                "CAST(:ts AS timestamptz), :t1, :t2, :t3, 'Y')"),
                {"ymd": ts[:10].replace("-", ""), "hmsf": f"{i:06d}", "s": sensor, "d": device,
                 "ts": ts, "t1": t1, "t2": t2, "t3": t3})
        conn.execute(text(guide_blocks("sql")[0]))  # the guide's view, as printed
    iot.dispose()
    pama = create_engine(urls["pama"])
    with pama.begin() as conn:
        for key, run_id, status in REGISTRY:
            conn.execute(text("INSERT INTO pama.s3_keys (key, compression_run_id, "
                              "compression_status) VALUES (:k, :r, :s)"),
                         {"k": key, "r": run_id, "s": status})
    pama.dispose()


def _export_file(urls: dict[str, str], s3_endpoint: str, path: Path) -> Path:
    """What `airflow connections export connections.json` writes for the seed's ids."""
    def pg(role: str) -> dict:
        u = make_url(urls[role])
        return {"conn_type": "postgres", "host": u.host, "port": u.port, "login": u.username,
                "password": "not-used-trust-auth", "schema": u.database, "extra": ""}

    path.write_text(json.dumps({
        "pg_fdw_v1_iot": pg("iot"), "pg_fdw_v2_hq": pg("hq"),
        "mssql-pama": pg("pama"),  # PostgreSQL standing in for the seed's SQL Server
        "aws-creds": {"conn_type": "aws", "login": "AKIAGUIDE", "password": "guide-secret",
                      "extra": json.dumps({"region_name": "us-east-1",
                                           "endpoint_url": s3_endpoint})},
    }))
    return path


def _run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    args = [os.path.expandvars(a) if "$" in a else a for a in shlex.split(command)]
    args = [a.replace("$SEED_CONNECTIONS_FILE", env["SEED_CONNECTIONS_FILE"]) for a in args]
    assert args[0] == "shopfloor", command
    saved = os.environ.copy()
    try:  # expandvars reads os.environ: point it at the guide's environment
        os.environ.update(env)
        args = [os.path.expandvars(a) for a in args]
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.run([sys.executable, "-c", MAIN, *args[1:]], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def _expected_hourly(urls: dict[str, str]) -> dict[tuple, tuple]:
    """An independent GROUP BY over the seed's own raw table, in KST hours."""
    iot = create_engine(urls["iot"])
    with iot.connect() as conn:
        rows = conn.execute(text(
            "SELECT sensor_id, to_char(capture_dt AT TIME ZONE 'Asia/Seoul', 'YYYYMMDD'), "
            "to_char(capture_dt AT TIME ZONE 'Asia/Seoul', 'HH24'), "
            "max(CAST(NULLIF(t1, '') AS float8)), avg(CAST(NULLIF(t1, '') AS float8)), "
            "max(CAST(NULLIF(t2, '') AS float8)), avg(CAST(NULLIF(t2, '') AS float8)), "
            "max(CAST(NULLIF(t3, '') AS float8)), avg(CAST(NULLIF(t3, '') AS float8)), count(*) "
            "FROM flet_montrg.temperature_raw WHERE capture_dt >= '2025-08-20 15:00+00' "
            "AND capture_dt < '2025-08-20 17:00+00' GROUP BY 1, 2, 3")).all()
    iot.dispose()
    return {tuple(r[:3]): tuple(r[3:]) for r in rows}


def _approx(values: tuple) -> tuple:
    return tuple(None if v is None else round(float(v), 9) for v in values)


def test_the_switch_over_runs_as_written(databases, s3_endpoint, tmp_path):
    _fill(databases)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SHOPFLOOR_", "AIRFLOW_CONN_"))}
    env.update(PYTHONPATH=str(REPO), PREFECT_API_URL=PREFECT_API_URL.value(),
               SHOPFLOOR_HOME=str(tmp_path / "home"),
               SEED_CONNECTIONS_FILE=str(_export_file(databases, s3_endpoint,
                                                      tmp_path / "connections.json")))
    outputs = []
    for command in guide_commands():
        if command.startswith("export "):
            env.update(dict(kv.split("=", 1) for kv in shlex.split(command)[1:]))
            continue
        res = _run(command, env)
        assert res.returncode == 0, (command, res.stdout, res.stderr)
        outputs.append(res.stdout + res.stderr)
    assert "not-used-trust-auth" not in "".join(outputs)  # no secret printed
    assert "guide-secret" not in "".join(outputs)

    # The hourly rows in the HQ database equal the independent SQL over the seed's table.
    hq = create_engine(databases["hq"])
    with hq.connect() as conn:
        got = {(r[0], r[1], r[2]): tuple(r[3:]) for r in conn.execute(text(
            "SELECT loc_id, ymd, hh, temperature_max, temperature_avg, humidity_max, "
            "humidity_avg, pcv_temperature_max, pcv_temperature_avg, sample_count "
            "FROM flet_montrg.temperature_hourly"))}
        seed_rows = conn.execute(text("SELECT count(*) FROM flet_montrg.temperature")).scalar()
    hq.dispose()
    expected = _expected_hourly(databases)
    assert len(expected) == 4  # A001 and A002, each in 00h and 01h KST
    assert {k: _approx(v) for k, v in got.items()} == {
        k: _approx(v) for k, v in expected.items()}
    assert seed_rows == 0  # the seed's own table is left as it was

    # The registry: finished stays finished, a dead claim is claimable again.
    pama = create_engine(databases["pama"])
    with pama.connect() as conn:
        registry = {r[0]: (r[1], r[2], r[3]) for r in conn.execute(text(
            "SELECT key, distrik, compression_status, compression_run_id "
            "FROM flet_montrg.s3_object"))}
    pama.dispose()
    assert registry == {
        "BRCB/2025/08/20/log-1.json": ("BRCB", "SUCCESS", "run-7"),
        "BRCB/2025/08/20/log-2.json": ("BRCB", "PENDING", None),
        "BRCG/2025/08/20/log-3.json": ("BRCG", "PENDING", None),
        "BRCG/2025/08/20/log-4.json": ("BRCG", "FAILED", "run-9"),
    }


def test_db_check_names_what_differs_in_the_seeds_hourly_table(databases, tmp_path):
    """Pointed at the seed's own ``temperature`` (other columns), the check fails and says
    why, changing nothing; this is why the guide keeps shopfloor's hourly table apart."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPFLOOR_")}
    env.update(PYTHONPATH=str(REPO), PREFECT_API_URL=PREFECT_API_URL.value(),
               SHOPFLOOR_DB_SCHEMA="flet_montrg",
               SHOPFLOOR_TABLE_TEMPERATURE_HOURLY="temperature")
    res = subprocess.run(
        [sys.executable, "-c", MAIN, "db", "check", "--url", databases["hq"],
         "--table", "temperature_hourly"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stdout + res.stderr
    for column in ("loc_id", "hh", "sample_count"):
        assert column in res.stdout, res.stdout
