"""The ``shopfloor`` console script, run as a user runs it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SHOPFLOOR = str(Path(sys.executable).with_name("shopfloor"))


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "SHOPFLOOR_HOME": str(tmp_path / "home"),
                "PREFECT_HOME": str(tmp_path / "prefect"), **env}
    full_env.pop("PREFECT_API_URL", None)
    return subprocess.run([SHOPFLOOR, *args], capture_output=True, text=True, env=full_env,
                          timeout=180)


def test_unreachable_database_url_is_one_error_line(tmp_path):
    res = run(["db", "init", "--url", "postgresql+psycopg2://u:pw-secret@127.0.0.1:1/x"],
              tmp_path)
    assert res.returncode == 1
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("error: cannot connect to database")
    assert "Traceback" not in res.stderr and "pw-secret" not in res.stderr + res.stdout


def test_malformed_url_and_bad_schema_are_one_error_line(tmp_path):
    res = run(["db", "init", "--url", "not a url"], tmp_path)
    assert res.returncode == 2 and "error: invalid database URL" in res.stderr
    db = tmp_path / "x.db"
    res = run(["db", "init", "--url", f"sqlite:///{db}", "--schema", "a;b"], tmp_path)
    assert res.returncode == 2 and "error: invalid schema 'a;b'" in res.stderr
    assert "Traceback" not in res.stderr
    assert not db.exists()  # rejected before any connection


def test_db_init_on_a_url_creates_the_tables(tmp_path, pg_url):
    res = run(["db", "init", "--url", pg_url, "--schema", "flet_montrg"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "tables ready" in res.stdout


@pytest.mark.timeout(300)
def test_bootstrap_then_unknown_block_in_ephemeral_mode(tmp_path):
    res = run(["blocks", "bootstrap"], tmp_path, AWS_SECRET_ACCESS_KEY="aws-secret-xyz",
              AWS_ACCESS_KEY_ID="AKIATEST")
    assert res.returncode == 0, res.stderr
    assert "shopfloor-warehouse-db" in res.stdout and "aws-secret-xyz" not in res.stdout
    res = run(["db", "init", "--block", "no-such-db"], tmp_path)
    assert res.returncode == 2
    assert "error: block 'no-such-db' not found" in res.stderr
    assert "Traceback" not in res.stderr


def error_lines(res: subprocess.CompletedProcess) -> list[str]:
    """What the command printed besides Prefect's notice of its temporary server."""
    return [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip()
            and "temporary server" not in ln and not ln.startswith("See https://docs.prefect")]


@pytest.mark.parametrize(("args", "message"), [
    (["hourly", "aggregate", "--timezone", "Mars/Base"], "error: unknown time zone 'Mars/Base'"),
    (["hourly", "backfill", "2024-01-01", "2024-01-02", "--max-concurrency", "33"],
     "error: Invalid value for '--max-concurrency': Input should be less than or equal to 32"),
])  # one rule of each kind end to end; every message is in tests/unit
def test_hourly_bad_parameters_are_one_error_line(tmp_path, args, message):
    res = run(args, tmp_path)
    assert res.returncode == 2
    lines = error_lines(res)
    assert len(lines) == 1 and lines[0].startswith(message), lines


@pytest.mark.timeout(300)
def test_hourly_unknown_block_is_one_error_line_before_any_flow_run(tmp_path):
    res = run(["hourly", "aggregate", "--source-db", "nope"], tmp_path)
    assert res.returncode == 2
    lines = error_lines(res)
    assert len(lines) == 1 and lines[0].startswith("error: block 'nope' not found"), lines


def test_tags_import_a_map_then_list_it(tmp_path, pg_url):
    register_map = tmp_path / "press.yaml"
    register_map.write_text(
        "- {name: line_pressure, column: line_pressure, address: 0, data_type: float32,"
        " unit: bar}\n"
        "- {name: recipe, column: recipe, address: 10, data_type: string, length: 4}\n")
    args = ["tags", "import", "--map", str(register_map), "--device", "press-1", "--loc-id",
            "L9", "--url", pg_url]
    for _ in range(2):  # a repeat registers nothing twice
        res = run(args, tmp_path)
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == "press-1: 2 tags registered"
    res = run(["tags", "list", "--url", pg_url, "--device", "press-1"], tmp_path)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[-1] == "2 tags" and len(lines) == 4
    assert lines[1].split()[1:] == ["press-1", "line_pressure", "bar", "float32", "L9",
                                    "holding:0"]
    assert lines[2].split()[1:] == ["press-1", "recipe", "-", "string", "L9", "holding:10"]
    res = run(["tags", "import", "--map", str(register_map), "--url", pg_url], tmp_path)
    assert res.returncode == 2 and "error: --map needs one --device and --loc-id" in res.stderr


@pytest.mark.timeout(400)
def test_lake_export_tags_on_the_embedded_defaults(tmp_path):
    """`blocks bootstrap` with no settings (SQLite warehouse, local-folder lake), samples
    in the warehouse, then `shopfloor lake export-tags`: every sample in the lake once."""
    from datetime import UTC, datetime, timedelta

    from shopfloor.db.engine import init_db, make_engine
    from shopfloor.db.upsert import upsert
    from shopfloor.lake import protocol
    from shopfloor.storage import StorageLocation

    env = {k: "" for k in os.environ if k.startswith("SHOPFLOOR_") and k.endswith(
        ("_DB_URL", "_BUCKET"))}
    res = run(["blocks", "bootstrap"], tmp_path, **env)
    assert res.returncode == 0, res.stderr
    engine = make_engine(f"sqlite+pysqlite:///{tmp_path / 'home' / 'shopfloor.db'}")
    tables = init_db(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        upsert(conn, tables.tag_samples,
               [{"tag_id": 3, "ts": now - timedelta(seconds=5 * i), "value": float(i),
                 "text_value": None, "quality": 192, "reason": None,
                 "ingested_at": now - timedelta(minutes=10)} for i in range(50)],
               ["tag_id", "ts"])
    engine.dispose()
    res = run(["lake", "export-tags"], tmp_path, **env)
    assert res.returncode == 0, res.stderr
    assert "samples 50, tags 1" in res.stdout
    lake = StorageLocation("local", str(tmp_path / "home" / "lake"))
    got = protocol.read_lake(lake, "tag_samples", "tag_id, ts").to_pylist()
    assert len(got) == 50 and {r["tag_id"] for r in got} == {3}
