"""The deployments beside the chain, each run in a container of `shopfloor:latest` with
exact results: the Spark extraction (local Spark inside the container, JDBC from the
host's PostgreSQL), the lake maintenance of its output, the hourly aggregation and the
backfill against MariaDB, the anomaly detection.

One `prefect server`, one Docker work pool made from deployments/docker-pool.json, one
Docker worker (`prefect worker start --type docker`) and one `shopfloor deploy --no-build
--paused` of the repo's prefect.yaml serve every test of the module (started once: a
server and a deploy cost about a minute). Each test creates its run with the deployment's
name and parameters, as `prefect deployment run --param` does, with a bind-mounted
SHOPFLOOR_HOME (the local lake) in place of the named volumes, and checks that the run's
container is gone afterwards. The blocks are the defaults `shopfloor blocks bootstrap`
makes inside the image, on a PostgreSQL database of this module; MariaDB gets a block of
its own.
"""

import io
import json
import signal
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import boto3
import pyarrow.parquet as pq
import pytest
from prefect.blocks.core import Block
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect_aws import AwsCredentials, S3Bucket
from prefect_aws.client_parameters import AwsClientParameters
from sqlalchemy import insert, select, text
from sqlalchemy.engine import make_url

from blocks.bootstrap import connector_from_url
from deployments.docker_pool import load_template
from shopfloor.anomaly.findings import DetectorParams
from shopfloor.anomaly.run import plan_hours
from shopfloor.anomaly.sources import find_all
from shopfloor.anomaly.synthetic import synthetic_year
from shopfloor.db.engine import init_db, make_engine
from shopfloor.db.schema import get_tables
from shopfloor.historian.seed import HistorianSeed, seed_historian
from shopfloor.lake import protocol
from shopfloor.storage import StorageLocation
from tests.conftest import free_port
from tests.docker.dockerlib import (
    IMAGE,
    docker,
    remove_pool_containers,
    wait_no_containers,
    wait_terminal,
)
from tests.e2e.servers import BIN, ROOT, api, clean_env, prefect_server, sh, stop
from tests.integration.aggregation.conftest import (
    assert_hourly_equal,
    expected_hourly,
    readings,
)
from tests.pg import throwaway_database

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

# Where SHOPFLOOR_HOME is inside the image (Dockerfile).
CONTAINER_HOME = "/opt/shopfloor/.shopfloor"
# Two months with a boundary inside the window: 2026-01-30 .. 2026-02-02 (exclusive), 12
# tags, a reading per tag every 30 minutes, every 10th reading bad (dataintegrity 0).
SEED = HistorianSeed(start=datetime(2026, 1, 30, tzinfo=UTC),
                     end=datetime(2026, 2, 2, tzinfo=UTC), n_tags=12, interval_s=1800)
# The extraction's window (days, UTC, end included): the last day of January and the
# first of February, so both monthly tables are read.
WINDOW = ("2026-01-31", "2026-02-01")


@dataclass
class Stack:
    """The module's server, pool and worker; ``home`` is the containers' SHOPFLOOR_HOME."""

    env: dict[str, str]
    pool: str
    home: Path
    db_url: str
    worker_log: Path

    def run(self, deployment: str, timeout: float = 600, **parameters) -> dict:
        """A flow run of ``deployment`` ("flow/deployment") with ``parameters`` (checked
        against the deployment's schema by the server), to its end; its container must be
        removed afterwards."""
        flow, name = deployment.split("/")
        dep = api(self.env, "GET", f"/deployments/name/{flow}/{name}").json()
        run = api(self.env, "POST", f"/deployments/{dep['id']}/create_flow_run", json={
            "parameters": parameters,
            "job_variables": {"volumes": [f"{self.home}:{CONTAINER_HOME}"]}}).json()
        done = wait_terminal(self.env["PREFECT_API_URL"], run["id"], timeout)
        assert done["state_type"] == "COMPLETED", (done["state"], self.logs(run["id"]))
        # The state is Completed a moment before the container exits (auto_remove).
        left = wait_no_containers("io.prefect.flow-run-id", run["id"], timeout=60)
        assert not left, f"containers left by {deployment}: {left}"
        return done

    def logs(self, run_id: str) -> str:
        """The run's log lines (for a failure's message) and the worker's last lines."""
        lines = api(self.env, "POST", "/logs/filter", json={
            "logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200}).json()
        return "\n".join(r["message"] for r in lines)[-6000:] + "\n--- worker:\n" + \
            self.worker_log.read_text()[-3000:]

    def save_connector(self, url: str) -> str:
        """A SqlAlchemyConnector block for ``url`` on this module's server; its name."""
        return self.save(connector_from_url(url), "docker-db")

    def save(self, block: Block, prefix: str) -> str:
        """``block`` saved on this module's server under a new name; the name."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        with temporary_settings(updates={PREFECT_API_URL: self.env["PREFECT_API_URL"]}):
            block.save(name, overwrite=True)
        return name


def _in_container(env: dict[str, str], home: Path, pool: str, *cmd: str) -> None:
    """A one-off command in the image as the flow runs see the world (host network, the
    same SHOPFLOOR_HOME), labelled with the pool so the clean-up finds it."""
    res = docker("run", "--rm", "--network", "host", "--label",
                 f"io.prefect.work-pool-name={pool}", "-v", f"{home}:{CONTAINER_HOME}",
                 "-e", f"PREFECT_API_URL={env['PREFECT_API_URL']}",
                 "-e", f"SHOPFLOOR_DB_URL={env['SHOPFLOOR_DB_URL']}",
                 IMAGE, *cmd, check=False, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_server_url: str) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("docker-flows")
    tag = uuid.uuid4().hex[:8]
    pool = f"shopfloor-docker-{tag}"
    # The containers' SHOPFLOOR_HOME: written by uid 10001 (the image's user).
    home = tmp / "container-home"
    home.mkdir()
    home.chmod(0o777)
    worker = None
    with throwaway_database(pg_server_url, "docker_flows") as db_url, \
            throwaway_database(pg_server_url, "docker_flows_prefect") as prefect_db:
        env = clean_env()
        env.update({
            "PREFECT_LOGGING_LEVEL": "INFO", "SHOPFLOOR_DB_URL": db_url,
            "SHOPFLOOR_HOME": str(tmp / "host-home"),
            # PostgreSQL rather than SQLite: Spark's runs log a lot at once.
            "PREFECT_API_DATABASE_CONNECTION_URL": make_url(prefect_db).set(
                drivername="postgresql+asyncpg").render_as_string(hide_password=False)})
        try:
            with prefect_server(tmp, env, free_port()):
                template = tmp / "pool.json"
                template.write_text(json.dumps(load_template(env["PREFECT_API_URL"])))
                sh(env, str(BIN / "prefect"), "work-pool", "create", pool, "--type",
                   "docker", "--base-job-template", str(template))
                # The default blocks from inside the image (the local lake is the
                # container's path; every database block is this module's database) and
                # the tables: one container, since each start costs seconds.
                _in_container(env, home, pool, "sh", "-c",
                              "shopfloor blocks bootstrap && shopfloor db init")
                out = sh(env, str(BIN / "shopfloor"), "deploy", "--no-build", "--image",
                         IMAGE, "--pool", pool, "--paused").stdout
                assert f"deployments to {pool}" in out, out
                worker_log = tmp / "worker.log"
                # The worker looks for new runs every 2 s rather than 10: the module's
                # runs come one after another.
                worker = subprocess.Popen(
                    [str(BIN / "prefect"), "worker", "start", "--type", "docker", "--pool",
                     pool, "--name", f"flows-{tag}"],
                    env={**env, "PREFECT_WORKER_QUERY_SECONDS": "2"}, cwd=ROOT,
                    stdout=open(worker_log, "w"), stderr=subprocess.STDOUT,
                    start_new_session=True)
                yield Stack(env, pool, home, db_url, worker_log)
                stop(worker, signal.SIGINT)
                left = wait_no_containers("io.prefect.work-pool-name", pool, timeout=60)
                assert not left, f"containers left: {left}"
        finally:
            if worker is not None:
                stop(worker, signal.SIGINT)
            remove_pool_containers(pool)


def _source_rows(db_url: str) -> Counter:
    """What the extraction must write, straight from the historian: good readings of the
    window's days in both monthly tables, with the tag's path."""
    lo = int(datetime.fromisoformat(WINDOW[0]).replace(tzinfo=UTC).timestamp() * 1000)
    hi = int(datetime.fromisoformat(WINDOW[1]).replace(tzinfo=UTC).timestamp() * 1000) \
        + 86_400_000
    engine = make_engine(db_url)
    rows: Counter = Counter()
    with engine.connect() as conn:
        for table in ("sqlt_data_1_2026_01", "sqlt_data_1_2026_02"):
            rows.update(tuple(r) for r in conn.execute(text(
                "SELECT d.tagid, te.tagpath, d.t_stamp, "  # noqa: S608 - constant names
                "coalesce(d.floatvalue, CAST(d.intvalue AS double precision)), "
                f"d.dataintegrity FROM {table} d JOIN sqlth_te te ON te.id = d.tagid "
                "WHERE d.dataintegrity = 192 AND d.t_stamp >= :lo AND d.t_stamp < :hi"),
                {"lo": lo, "hi": hi}))
    engine.dispose()
    return rows


def _lake(stack: Stack) -> StorageLocation:
    return StorageLocation("local", str(stack.home / "lake"))


def _lake_rows(stack: Stack) -> Counter:
    """Every visible row of sensor_data, read by the lake protocol (a merge's inputs and
    outputs never both)."""
    table = protocol.read_lake(_lake(stack), "sensor_data",
                               "tagid, tagpath, epoch_ms(ts) AS t, value, dataintegrity")
    return Counter(zip(*[table.column(c).to_pylist() for c in table.column_names],
                       strict=True))


def _files_per_day(stack: Stack) -> dict[str, int]:
    files = protocol.visible_files(_lake(stack), "sensor_data")
    return dict(Counter(o.key.split("date=")[1].split("/")[0] for o in files))


def test_spark_extraction_then_lake_maintenance_in_containers(stack: Stack) -> None:
    seed_historian(make_engine(stack.db_url), get_tables(None), SEED)
    expected = _source_rows(stack.db_url)
    # 12 tags x 48 readings x 2 days, every 10th bad.
    assert sum(expected.values()) == 12 * 48 * 2 * 9 // 10

    # Local Spark inside the container reads both monthly tables through JDBC from the
    # host's PostgreSQL; small files on purpose, for the maintenance below.
    stack.run("spark-sensor-extraction/daily", start=WINDOW[0], end=WINDOW[1],
              spark_master="local[2]", num_partitions=2, recheck_days=0,
              max_records_per_file=100)
    got = _lake_rows(stack)
    print("\nDOCKER SPARK FIGURES", {"source_rows": sum(expected.values()),
                                     "lake_rows": sum(got.values()),
                                     "files_per_day": _files_per_day(stack)})
    assert got == expected
    before = _files_per_day(stack)
    assert set(before) == set(WINDOW) and min(before.values()) >= 2, before

    # lake-maintenance merges each closed day of sensor_data into one file; the rows a
    # reader sees are the same, once.
    stack.run("lake-maintenance/daily", prefixes=["sensor_data"])
    after = _files_per_day(stack)
    print("DOCKER LAKE MAINTENANCE FIGURES", {"before": before, "after": after})
    assert after == {day: 1 for day in WINDOW}, after
    assert _lake_rows(stack) == expected


def test_registration_and_compaction_against_s3_in_containers(stack: Stack,
                                                             s3_endpoint: str) -> None:
    """register-s3-keys and s3-compaction on a bucket of moto's S3 server (127.0.0.1, the
    containers on the host's network): raw JSON objects as capture lands them in, Parquet
    partitions out, every line once."""
    bucket = f"docker-flows-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket=bucket)
    creds = AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing",
                           region_name="us-east-1",
                           aws_client_parameters=AwsClientParameters(endpoint_url=s3_endpoint))
    raw = stack.save(S3Bucket(bucket_name=bucket, bucket_folder="raw", credentials=creds),
                     "docker-raw")
    lake = stack.save(S3Bucket(bucket_name=bucket, bucket_folder="lake", credentials=creds),
                      "docker-lake")
    # Two hour folders of a district, four objects of 25 lines each.
    hb = int(datetime(2026, 1, 5, 12, tzinfo=UTC).timestamp() * 1000)
    sent = {}
    for i in range(4):
        hour = ("2026010512", "2026010513")[i // 2]
        lines = []
        for j in range(25):
            heartbeat = hb + 60_000 * (25 * i + j)
            sent[heartbeat] = round(20.0 + (i * 25 + j) / 10, 3)
            lines.append(json.dumps({"heartbeat": heartbeat, "dstrct_code": "DKR",
                                     "device": "dock-1", "temperature": sent[heartbeat]}))
        s3.put_object(Bucket=bucket, Key=f"raw/DKR/{hour}/part-{i}.json",
                      Body="\n".join(lines).encode())
    stack.run("register-s3-keys/every-15-minutes", raw_logs=raw, prefix="DKR", distrik="DKR")
    engine = make_engine(stack.db_url)
    with engine.connect() as conn:
        pending = conn.execute(text(
            "SELECT compression_status, count(*) FROM s3_object WHERE distrik = :d "
            "GROUP BY 1"), {"d": "DKR"}).all()
    assert dict(pending) == {"PENDING": 4}, pending
    stack.run("s3-compaction/hourly", distrik="DKR", raw_logs=raw, lake=lake)
    with engine.connect() as conn:
        done = conn.execute(text(
            "SELECT compression_status, count(*) FROM s3_object WHERE distrik = :d "
            "GROUP BY 1"), {"d": "DKR"}).all()
    engine.dispose()
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="lake/")
    keys = [o["Key"] for p in pages for o in p.get("Contents", [])
            if o["Key"].endswith(".parquet") and "/_" not in o["Key"]]
    got: Counter = Counter()
    for key in keys:
        table = pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()),
                              columns=["heartbeat", "temperature"])
        got.update(zip(*[c.to_pylist() for c in table.columns], strict=True))
    print("\nDOCKER S3 FIGURES", {"objects": 4, "lines": len(sent), "registry": dict(done),
                                   "parquet_files": len(keys),
                                   "parquet_rows": sum(got.values())})
    assert dict(done) == {"SUCCESS": 4}, done
    assert keys and all("dstrct_code=DKR" in k for k in keys), keys
    assert got == Counter(sent.items())


def test_hourly_aggregation_and_backfill_against_mariadb_in_containers(
        stack: Stack, mariadb_url: str) -> None:
    engine = make_engine(mariadb_url)
    tables = init_db(engine)
    locs = ["L001", "L002"]
    rows = readings(locs, datetime(2024, 11, 2, tzinfo=UTC), datetime(2024, 11, 4, tzinfo=UTC),
                    step_minutes=10)
    with engine.begin() as conn:
        conn.execute(insert(tables.temperature_raw), rows)
    block = stack.save_connector(mariadb_url)

    def hourly() -> dict[tuple, dict]:
        h = tables.temperature_hourly
        with engine.connect() as conn:
            return {(r["loc_id"], r["ymd"], r["hh"]): dict(r)
                    for r in conn.execute(select(h)).mappings()}

    # MariaDB stores the Float columns in 32 bits (6 significant digits back).
    rel = 1e-5
    # The first day by hourly-aggregation's start/end (a wall-clock window)...
    stack.run("hourly-aggregation/hourly", start="2024-11-02T00:00:00",
              end="2024-11-03T00:00:00", source_db=block, target_db=block, timezone="UTC")
    first = expected_hourly(rows, "UTC", datetime(2024, 11, 2), datetime(2024, 11, 3))
    assert len(first) == 2 * 24
    assert_hourly_equal(hourly(), first, rel=rel)
    # ... then both days by hourly-backfill (chunks in parallel): the second day added,
    # the first one unchanged.
    stack.run("hourly-backfill/on-demand", start_date="2024-11-02", end_date="2024-11-03",
              chunk_hours=12, source_db=block, target_db=block, timezone="UTC")
    both = expected_hourly(rows, "UTC")
    assert len(both) == 2 * 48
    got = hourly()
    assert_hourly_equal(got, both, rel=rel)
    assert sum(r["sample_count"] for r in got.values()) == len(rows)
    engine.dispose()


def test_anomaly_detection_in_a_container(stack: Stack) -> None:
    engine = make_engine(stack.db_url)
    tables = get_tables(None)
    syn = synthetic_year(n_locations=2, seed=21, timezone="UTC")
    with engine.begin() as conn:
        conn.execute(tables.temperature_hourly.delete())
        conn.execute(insert(tables.temperature_hourly),
                     syn.frame.assign(updated_at=datetime.now(UTC)).to_dict("records"))
    start, end = datetime(2024, 1, 1), datetime(2025, 1, 1)
    stack.run("anomaly-detection/hourly", start=start.isoformat(), end=end.isoformat(),
              timezone="UTC", series="measures")
    # What the same detectors with the deployment's defaults find, run here on the host
    # over the same rows: the container must have stored exactly these, once each.
    tz, params = ZoneInfo("UTC"), DetectorParams()
    with engine.connect() as conn:
        stored = conn.execute(select(tables.anomaly)).mappings().all()
        found, _, _ = find_all(conn, tables, tz, "UTC",
                               plan_hours(start, end, tz, 24, params, datetime.now(UTC)),
                               params, series="measures")
    engine.dispose()
    got = Counter((r["kind"], r["loc_id"], r["measure"],
                   r["hour_start"].replace(tzinfo=UTC) if r["hour_start"].tzinfo is None
                   else r["hour_start"].astimezone(UTC)) for r in stored)
    kinds = Counter(r["kind"] for r in stored)
    print("\nDOCKER ANOMALY FIGURES", {"stored": len(stored), "expected": len(found),
                                       **kinds})
    assert got == Counter(f.key for f in found), kinds
    assert set(kinds) == {"deviation", "spike", "flatline", "gap"}, kinds
    # Each planted stuck run is one flatline row, keyed by its first hour.
    planted = syn.truth["flatline"]
    assert kinds["flatline"] == int((planted[:, 1:] & ~planted[:, :-1]).sum()) > 0
