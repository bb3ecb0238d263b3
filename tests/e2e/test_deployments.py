"""End to end with real processes: a `prefect server`, `shopfloor deploy`, a process worker,
`prefect deployment run --param`, PostgreSQL and moto's S3 server.

Everything is started here and stopped at the end (the worker with SIGINT, which is the
signal it honours); no process is left behind.
"""

import io
import json
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import httpx
import pyarrow.parquet as pq
import pytest
import yaml
from sqlalchemy import select

from shopfloor.db.engine import init_db, make_engine
from shopfloor.db.upsert import upsert
from tests.conftest import free_port
from tests.e2e.servers import BIN, ROOT, api, clean_env, prefect_server, sh, stop

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def env(tmp_path_factory, pg_url, s3_endpoint) -> Iterator[dict[str, str]]:
    """A real Prefect server on 127.0.0.1 and the environment that points at it."""
    home = tmp_path_factory.mktemp("e2e")
    bucket = "e2e-shopfloor"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(
        Bucket=bucket)
    e = clean_env()
    e.update({
        "PREFECT_LOGGING_LEVEL": "INFO",
        "SHOPFLOOR_HOME": str(home / "shopfloor"),
        "SHOPFLOOR_DB_URL": pg_url,
        "SHOPFLOOR_S3_BUCKET": bucket,
        "SHOPFLOOR_S3_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SPARK_LOCAL_IP": "127.0.0.1",
    })
    with prefect_server(home, e, free_port()):
        e["E2E_BUCKET"] = bucket
        yield e


@pytest.fixture(scope="module")
def deployed(env) -> dict[str, str]:
    """Blocks bootstrapped, tables created, every flow deployed to the Docker pool (read
    back later) and then to a local process pool, schedules paused so only our runs run."""
    sh(env, str(BIN / "shopfloor"), "blocks", "bootstrap")
    sh(env, str(BIN / "shopfloor"), "db", "init")
    sh(env, str(BIN / "shopfloor"), "deploy", "--no-build", "--image", "shopfloor:e2e",
       "--paused")
    docker = {
        f"{d['entrypoint']}/{d['name']}": d
        for d in api(env, "POST", "/deployments/filter", json={}).json()
    }
    sh(env, str(BIN / "shopfloor"), "deploy", "--local", "--paused")
    return docker


@pytest.fixture(scope="module")
def worker(env, deployed) -> Iterator[subprocess.Popen]:
    log = open(Path(env["PREFECT_HOME"]) / "worker.log", "w")
    proc = subprocess.Popen(
        [str(BIN / "prefect"), "worker", "start", "--pool", "shopfloor-process"],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    yield proc
    stop(proc, signal.SIGINT, timeout=90)
    log.close()
    assert proc.poll() is not None


def test_deployments_match_prefect_yaml(env, deployed):
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert len(deployed) == len(config["deployments"])
    pool = api(env, "GET", "/work_pools/shopfloor-docker").json()
    assert pool["type"] == "docker"
    for dep in config["deployments"]:
        got = next(d for d in deployed.values()
                   if d["entrypoint"] == dep["entrypoint"] and d["name"] == dep["name"])
        assert got["work_pool_name"] == "shopfloor-docker"
        want_jv = dict(dep["work_pool"]["job_variables"], image="shopfloor:e2e")
        assert got["job_variables"] == want_jv
        assert got["enforce_parameter_schema"] is True
        crons = [(s["schedule"]["cron"], s["schedule"]["timezone"]) for s in got["schedules"]]
        assert crons == [(s["cron"], s["timezone"]) for s in dep.get("schedules") or []]
    hourly = next(d for d in deployed.values() if d["entrypoint"].endswith("hourly_aggregation"))
    assert hourly["concurrency_limit"] == 1 or hourly["global_concurrency_limit"]["limit"] == 1
    assert hourly["concurrency_options"]["collision_strategy"] == "ENQUEUE"


def _run(env, name: str, *params: str) -> subprocess.CompletedProcess:
    args = [str(BIN / "prefect"), "deployment", "run", name, "--watch",
            "--watch-timeout", "400"]
    for p in params:
        args += ["--param", p]
    return sh(env, *args, check=False, timeout=450)


def test_hourly_aggregation_run_with_parameters(env, worker, pg_url):
    engine = make_engine(pg_url)
    tables = init_db(engine)
    base = datetime(2026, 1, 5, 10, tzinfo=UTC)
    rows = [{"loc_id": "E2E1", "capture_dt": base + timedelta(minutes=m), "temperature": 20.0 + m,
             "humidity": 50.0, "pcv_temperature": 30.0, "device": "e2e",
             "ingested_at": datetime.now(UTC)} for m in range(120)]
    with engine.begin() as conn:
        upsert(conn, tables.temperature_raw, rows, ["loc_id", "capture_dt"])
    res = _run(env, "hourly-aggregation/hourly", f"start={base.isoformat()}",
               f"end={(base + timedelta(hours=2)).isoformat()}")
    assert res.returncode == 0 and "Completed" in res.stdout, res.stdout + res.stderr
    t = tables.temperature_hourly
    with engine.connect() as conn:
        got = conn.execute(select(t.c.hh, t.c.sample_count, t.c.temperature_max)
                           .where(t.c.loc_id == "E2E1").order_by(t.c.hh)).all()
    assert got == [("10", 60, 79.0), ("11", 60, 139.0)]
    engine.dispose()


def test_s3_compaction_run_writes_parquet_to_the_bucket(env, worker, s3_endpoint):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    bucket = env["E2E_BUCKET"]
    hb = int(datetime(2026, 1, 5, 12, tzinfo=UTC).timestamp() * 1000)
    for i in range(3):
        body = "\n".join(json.dumps({"heartbeat": hb + 1000 * (10 * i + j), "dstrct_code": "E2E",
                                     "temperature": 20.0 + j}) for j in range(10))
        s3.put_object(Bucket=bucket, Key=f"raw/E2E/2026010512/part-{i}.json", Body=body.encode())
    res = _run(env, "register-s3-keys/every-15-minutes", "prefix=E2E", "distrik=E2E")
    assert res.returncode == 0 and "Completed" in res.stdout, res.stdout + res.stderr
    res = _run(env, "s3-compaction/hourly", "distrik=E2E")
    assert res.returncode == 0 and "Completed" in res.stdout, res.stdout + res.stderr
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="lake/")
            .get("Contents", []) if o["Key"].endswith(".parquet")]
    assert keys, "no Parquet written under lake/"
    rows = sum(pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=k)["Body"].read()))
               .num_rows for k in keys)
    assert rows == 30


def test_invalid_parameter_is_refused_before_the_run(env, deployed):
    res = _run(env, "hourly-aggregation/hourly", "start=not-a-date")
    assert res.returncode != 0
    assert "start" in (res.stdout + res.stderr)
    runs = api(env, "POST", "/flow_runs/filter", json={}).json()
    bad = [(r["name"], r["state_name"], r["parameters"]) for r in runs
           if r["parameters"].get("start") == "not-a-date"]
    assert not bad, (res.stdout, res.stderr, bad)


# One bad value per typed limit of every deployed flow: the server must refuse each before
# a run exists, and the parameter's schema (what the UI form shows) must carry the limit.
REFUSED = [
    ("modbus-capture/every-hour", "samples", 0, "minimum"),
    ("modbus-capture/every-hour", "interval_seconds", -1, "minimum"),
    ("hourly-aggregation/hourly", "timezone", "Mars/Olympus_Mons", "enum"),
    ("hourly-aggregation/hourly", "end", "yesterday", "pattern"),
    ("hourly-backfill/on-demand", "chunk_hours", 0, "minimum"),
    ("hourly-backfill/on-demand", "max_concurrency", 99, "maximum"),
    ("hourly-backfill/on-demand", "timezone", "Europe/Atlantis", "enum"),
    ("register-s3-keys/every-15-minutes", "distrik", "no spaces!", "pattern"),
    ("register-s3-keys/every-15-minutes", "prefix", "../outside", "pattern"),
    ("s3-compaction/hourly", "key_limit_per_run", 0, "minimum"),
    ("s3-compaction/hourly", "ram_limit", "lots", "pattern"),
    ("s3-compaction/hourly", "tz_offset_hours", 99, "maximum"),
    ("s3-compaction/hourly", "claim_ttl_minutes", -1, "minimum"),
    ("s3-compaction/hourly", "target_prefix", "../outside", "pattern"),
    ("spark-sensor-extraction/daily", "max_records_per_file", 0, "minimum"),
    ("spark-sensor-extraction/daily", "num_partitions", 0, "minimum"),
    ("spark-sensor-extraction/daily", "spark_master", "nowhere", "pattern"),
    ("spark-sensor-extraction/daily", "output_prefix", "../outside", "pattern"),
    ("reprocess-raw/on-demand", "district", "no spaces!", "pattern"),
    ("reprocess-raw/on-demand", "timezone", "Europe/Atlantis", "enum"),
    ("lake-maintenance/daily", "min_files", 1, "minimum"),
    ("lake-maintenance/daily", "target_file_mb", 0, "minimum"),
    ("lake-maintenance/daily", "grace_days", 0, "minimum"),
    ("lake-maintenance/daily", "ram_limit", "lots", "pattern"),
]
REQUIRED = {"hourly-backfill/on-demand": {"start_date": "2026-01-01", "end_date": "2026-01-02"},
            "reprocess-raw/on-demand": {"start": "2026-01-01T00:00:00Z",
                                        "end": "2026-01-01T01:00:00Z"}}


def _keywords(schema: dict, definitions: dict) -> set[str]:
    """Every validation keyword in a parameter's schema, following $ref and anyOf/allOf."""
    found: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        found |= set(node) & {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                              "pattern", "enum", "maxItems", "minItems"}
        if "$ref" in node:
            stack.append(definitions.get(node["$ref"].rsplit("/", 1)[-1], {}))
        for key in ("anyOf", "allOf", "oneOf"):
            stack.extend(node.get(key, []))
        if isinstance(node.get("items"), dict):
            stack.append(node["items"])
    return found


@pytest.mark.parametrize(("deployment", "param", "value", "keyword"), REFUSED,
                         ids=[f"{d.split('/')[0]}-{p}" for d, p, _, _ in REFUSED])
def test_typed_limits_are_refused_by_the_server(env, deployed, deployment, param, value,
                                                keyword):
    flow_name, name = deployment.split("/")
    dep = api(env, "GET", f"/deployments/name/{flow_name}/{name}").json()
    schema = dep["parameter_openapi_schema"]
    assert param in schema["properties"], sorted(schema["properties"])
    assert keyword in _keywords(schema["properties"][param], schema.get("definitions", {}))
    # Every other parameter valid (a required one missing would be refused on its own).
    params = {**REQUIRED.get(deployment, {}), param: value}
    r = httpx.post(f"{env['PREFECT_API_URL']}/deployments/{dep['id']}/create_flow_run",
                   json={"parameters": params}, timeout=30)
    assert r.status_code == 409, r.text
    assert param in r.text
    runs = api(env, "POST", "/flow_runs/filter",
               json={"deployments": {"id": {"any_": [dep["id"]]}}}).json()
    assert not [x for x in runs if x["parameters"].get(param) == value]
