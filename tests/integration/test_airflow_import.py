"""``shopfloor blocks import-airflow`` against a real Prefect API: the seed's connections
(environment and export file) become blocks that load and connect; no secret is printed."""

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from prefect.settings import PREFECT_API_URL
from prefect_aws import AwsCredentials
from prefect_sqlalchemy import SqlAlchemyConnector
from sqlalchemy import text
from sqlalchemy.engine import make_url

from blocks.airflow_import import import_connections, read_connections
from blocks.resolve import s3_credentials
from shopfloor.airflow.targets import parse_name_map
from tasks import runtime

pytestmark = pytest.mark.usefixtures("prefect_harness")

REPO = Path(__file__).resolve().parents[2]
MAIN = "import sys; from deployments.cli import main; sys.argv[0] = 'shopfloor'; main()"
PG_PASSWORD = "p@ss/w:rd#%-iot"  # trust auth ignores it; it must survive the encoding
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCY"
MSSQL_PASSWORD = "mssql-Secret-9"
SECRETS = (PG_PASSWORD, quote(PG_PASSWORD, safe=""), AWS_SECRET, quote(AWS_SECRET, safe=""),
           MSSQL_PASSWORD, "AKIAIMPORTTEST")
MAPS = ["--map", "pg_fdw_v1_iot=af-source-db", "--map", "aws-creds=af-aws",
        "--map", "mssql-pama=af-metadata-db"]


def shopfloor(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    full.update(PYTHONPATH=str(REPO), PREFECT_API_URL=PREFECT_API_URL.value(), **env)
    return subprocess.run([sys.executable, "-c", MAIN, *args], cwd=REPO, capture_output=True,
                          text=True, env=full, timeout=300)


@pytest.fixture
def seed_connections(tmp_path: Path, pg_url: str, s3_endpoint: str) -> tuple[Path, dict]:
    """The seed's four connections: two in the environment (URI and JSON form), two in an
    `airflow connections export` JSON file, plus one type shopfloor has no block for."""
    pg = make_url(pg_url)
    env = {
        "AIRFLOW_CONN_PG_FDW_V1_IOT": (
            f"postgres://{pg.username}:{quote(PG_PASSWORD, safe='')}@{pg.host}:{pg.port}/"
            f"{pg.database}?sslmode=disable&cursor=dictcursor"),
        "AIRFLOW_CONN_AWS_CREDS": json.dumps({
            "conn_type": "aws", "login": "AKIAIMPORTTEST", "password": AWS_SECRET,
            "extra": {"region_name": "ap-southeast-1", "endpoint_url": s3_endpoint}}),
    }
    export = {
        "mssql-pama": {"conn_type": "mssql", "description": "", "host": "pama.example",
                       "login": "etl", "password": MSSQL_PASSWORD, "schema": "PAMA",
                       "port": 1433, "extra": ""},
        "pg_fdw_v2_hq": {"conn_type": "postgres", "description": None, "host": "hq.example",
                         "login": "hq", "password": "hq-pw-xyz", "schema": "hq",
                         "port": 5432, "extra": '{"sslmode": "require"}'},
        "slack_alerts": {"conn_type": "http", "host": "hooks.slack.com", "login": None,
                         "password": "slack-token-xyz", "schema": None, "port": None,
                         "extra": None},
    }
    path = tmp_path / "connections.json"
    path.write_text(json.dumps(export))
    return path, env


def test_import_creates_blocks_that_load_and_connect_and_prints_no_secret(seed_connections):
    path, env = seed_connections
    res = shopfloor("blocks", "import-airflow", "--file", str(path), "--env", *MAPS, env=env)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out  # the http connection was refused; the rest created
    assert [ln.split()[:3] for ln in res.stdout.splitlines() if ln.startswith("created")] == [
        ["created", "SqlAlchemyConnector", "af-metadata-db"],
        ["created", "SqlAlchemyConnector", "airflow-pg-fdw-v2-hq"],
        ["created", "AwsCredentials", "af-aws"],
        ["created", "SqlAlchemyConnector", "af-source-db"],
    ]
    assert ("refused slack_alerts: connection type 'http' has no shopfloor block "
            "(supported: postgres, mysql, mssql, aws)") in res.stderr.splitlines()
    assert "host pama.example:1433 database PAMA" in res.stdout
    for secret in (*SECRETS, "hq-pw-xyz", "slack-token-xyz"):
        assert secret not in out

    source = SqlAlchemyConnector.load("af-source-db").connection_info
    assert (source.driver, source.password.get_secret_value(), source.query) == (
        "postgresql+psycopg2", PG_PASSWORD, {"sslmode": "disable"})
    with runtime.engine("af-source-db").connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    meta = SqlAlchemyConnector.load("af-metadata-db").connection_info
    assert (meta.driver, meta.host, meta.port, meta.database, meta.username,
            meta.password.get_secret_value()) == (
        "mssql+pymssql", "pama.example", 1433, "PAMA", "etl", MSSQL_PASSWORD)
    hq = SqlAlchemyConnector.load("airflow-pg-fdw-v2-hq").connection_info
    assert (hq.host, hq.database, hq.query) == ("hq.example", "hq", {"sslmode": "require"})
    aws = s3_credentials(AwsCredentials.load("af-aws"))
    assert (aws.key_id, aws.secret, aws.region, aws.endpoint_url) == (
        "AKIAIMPORTTEST", AWS_SECRET, "ap-southeast-1", env_endpoint(env))


def env_endpoint(env: dict[str, str]) -> str:
    return json.loads(env["AIRFLOW_CONN_AWS_CREDS"])["extra"]["endpoint_url"]


def test_dry_run_creates_nothing_and_a_rerun_changes_nothing(seed_connections):
    path, env = seed_connections
    res = shopfloor("blocks", "import-airflow", "--file", str(path), "--only", "pg_fdw_v2_hq",
                    "--map", "pg_fdw_v2_hq=af-dry-run-hq", "--dry-run", env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "would create SqlAlchemyConnector  af-dry-run-hq                <- pg_fdw_v2_hq: "
        "postgresql+psycopg2 host hq.example:5432 database hq"]
    with pytest.raises(ValueError):
        SqlAlchemyConnector.load("af-dry-run-hq")

    connections = read_connections(path, env)
    names = parse_name_map(["pg_fdw_v2_hq=af-rerun-hq"])
    first = import_connections(connections, names, only=["pg_fdw_v2_hq"])
    saved = SqlAlchemyConnector.load("af-rerun-hq").connection_info
    assert import_connections(connections, names, only=["pg_fdw_v2_hq"]) == first
    assert SqlAlchemyConnector.load("af-rerun-hq").connection_info == saved
