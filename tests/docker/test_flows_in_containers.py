"""The deployments beside the chain, each run in a container of `shopfloor:latest` with
exact results: the Spark extraction (local Spark inside the container, JDBC from the
host's PostgreSQL), the lake maintenance of its output, the hourly aggregation and the
backfill against MariaDB, the anomaly detection, MQTT ingest from the host's Mosquitto,
the tag lake export, reprocessing of landed raw data, the master-data sync and the
credential refresh from moto's Secrets Manager.

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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import boto3
import pyarrow.parquet as pq
import pytest
from prefect.blocks.core import Block
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect_aws import AwsCredentials, S3Bucket
from prefect_aws.client_parameters import AwsClientParameters
from prefect_sqlalchemy import SqlAlchemyConnector
from sqlalchemy import Engine, create_engine, insert, select, text
from sqlalchemy.engine import make_url

from blocks.bootstrap import connector_from_url
from blocks.resolve import connector_url
from deployments.docker_pool import load_template
from shopfloor.aggregation.locations import COLUMNS as LOCATION_COLUMNS
from shopfloor.anomaly.findings import DetectorParams
from shopfloor.anomaly.run import plan_hours
from shopfloor.anomaly.sources import find_all
from shopfloor.anomaly.synthetic import synthetic_year
from shopfloor.db.engine import init_db, make_engine
from shopfloor.db.schema import get_tables
from shopfloor.historian.seed import HistorianSeed, seed_historian
from shopfloor.lake import protocol
from shopfloor.modbus.simulator import ModbusSimulator, SimulatedDevice, default_map
from shopfloor.storage import StorageLocation
from tests.conftest import free_port
from tests.docker.dockerlib import (
    CONTAINER_HOME,
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
from tests.integration.lake.test_tag_lake_export import assert_exactly_once, warehouse_rows
from tests.integration.lake.test_tag_lake_export import samples as lake_samples
from tests.integration.lake.test_tag_lake_export import write as lake_write
from tests.integration.mqtt.conftest import BROKER, Publisher, unique, write_config
from tests.integration.mqtt.conftest import samples as mqtt_samples
from tests.integration.mqtt.test_mqtt_flow import open_session
from tests.pg import throwaway_database
from tests.prefect_harness import asyncpg_url

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

# Two months with a boundary inside the window: 2026-01-30 .. 2026-02-02 (exclusive), 12
# tags, a reading per tag every 30 minutes, every 10th reading bad (dataintegrity 0).
SEED = HistorianSeed(start=datetime(2026, 1, 30, tzinfo=UTC),
                     end=datetime(2026, 2, 2, tzinfo=UTC), n_tags=12, interval_s=1800)
# The extraction's window (days, UTC, end included): the last day of January and the
# first of February, so both monthly tables are read.
WINDOW = ("2026-01-31", "2026-02-01")
# The MQTT test's first sample time (epoch ms, 2026-09-21).
MQTT_T0 = 1_790_000_000_000


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
            "PREFECT_API_DATABASE_CONNECTION_URL": asyncpg_url(prefect_db)})
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


def test_mqtt_ingest_in_a_container(stack: Stack) -> None:
    """mqtt-ingest against the host's Mosquitto (127.0.0.1:1883): the messages published
    while no run was connected wait at the broker in the collector's persistent session
    (as between two hourly runs), so the container's short window stores every one, once,
    however late it starts."""
    root, client_id, n = unique("dock"), unique("dock-collector"), 40
    # The config is read inside the container: on the bind mount, by its container path.
    write_config(stack.home / "mqtt-docker.yaml", {
        "broker": {"host": BROKER[0], "port": BROKER[1], "client_id": client_id},
        "json": [{"topic": f"{root}/+", "timestamp": "ts",
                  "tags": [{"name": "v", "path": "v", "max_value": 1000}]}]})
    open_session(client_id, f"{root}/+")
    pub = Publisher()
    for i in range(n):
        pub.publish(f"{root}/a", json.dumps({"ts": MQTT_T0 + i, "v": i}))
    pub.close()
    done = stack.run("mqtt-ingest/every-hour", config=f"{CONTAINER_HOME}/mqtt-docker.yaml",
                     duration_seconds=5.0)
    engine = make_engine(stack.db_url)
    rows = mqtt_samples(engine, root)
    engine.dispose()
    print("\nDOCKER MQTT FIGURES", {"published": n, "stored": len(rows),
                                    "message": done["state"]["message"]})
    assert f"received {n} messages, wrote {n} points (0 bad, 0 uncertain)" in \
        done["state"]["message"], done["state"]
    assert [(int(r["ts"].timestamp() * 1000) - MQTT_T0, r["value"], r["quality"])
            for r in rows] == [(i, float(i), 192) for i in range(n)]


def test_tag_lake_export_in_a_container(stack: Stack) -> None:
    """tag-lake-export from the module's warehouse into the containers' local lake (the
    bootstrapped default blocks): every tag sample of the warehouse (the MQTT test's too,
    when it ran first) once in the Parquet under tag_samples/, as a protocol reader sees
    it."""
    engine = make_engine(stack.db_url)
    tables = get_tables(None)
    ingested = datetime.now(UTC) - timedelta(minutes=30)
    # Two tags, two months each (a late sample of an old month is a partition of its own).
    lake_write(engine, tables, lake_samples([9101, 9102], datetime(2026, 3, 31, 23, 50,
                                                                      tzinfo=UTC),
                                            240, ingested, seed=27))
    upto = datetime.now(UTC)
    done = stack.run("tag-lake-export/hourly", lag_minutes=0)
    lake = _lake(stack)
    got = protocol.read_lake(lake, "tag_samples", "tag_id").num_rows
    want = len(warehouse_rows(engine, tables, upto))
    print("\nDOCKER TAG EXPORT FIGURES", {"warehouse_samples": want, "lake_rows": got,
                                         "state": done["state_name"]})
    assert want >= 2 * 240
    assert_exactly_once(lake, engine, tables, upto)
    months = {o.key.split("month=")[1].split("/")[0]
              for o in protocol.visible_files(lake, "tag_samples") if "tag_id=9101/" in o.key}
    engine.dispose()
    assert months == {"2026-03", "2026-04"}, months


def test_reprocess_raw_in_a_container(stack: Stack, s3_endpoint: str) -> None:
    """reprocess-raw over data captured on the host from the Modbus simulator and landed
    in moto's S3: the device's limit is lowered, the container judges the landed lines
    again and replaces temperature_raw, quarantine, the landed verdicts and the hourly
    rows of the window."""
    from blocks.modbus import ModbusDevice
    from flows.modbus_capture import modbus_capture

    tag = uuid.uuid4().hex[:8]
    name, loc = f"dock-rp-{tag}", f"LOC-drp-{tag}"
    bucket = f"docker-rp-{tag}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket=bucket)
    raw = stack.save(S3Bucket(bucket_name=bucket, bucket_folder="raw",
                              credentials=_moto_creds(s3_endpoint)), "docker-rp-raw")
    warehouse = stack.save_connector(stack.db_url)
    device = SimulatedDevice(free_port(), default_map())
    with ModbusSimulator([device]), \
            temporary_settings(updates={PREFECT_API_URL: stack.env["PREFECT_API_URL"]}):
        block = ModbusDevice(host="127.0.0.1", port=device.port, loc_id=loc, district="DRP",
                             timeout_seconds=0.5, retries=1, backoff_seconds=0.05,
                             register_map=device.tags)
        block.save(name, overwrite=True)
        # On the host (the run in a container is the reprocess): two captures, two
        # landed objects at least.
        for _ in range(2):
            modbus_capture([name], samples=4, interval_seconds=0.5, target_db=warehouse,
                           land_json=True, raw_logs=raw)
        engine = make_engine(stack.db_url)
        before = _rp_raw(engine, loc)
        temps = sorted(r[1] for r in before)
        assert len(temps) == 8 and temps[0] < temps[-1], temps
        # The rule changes: readings above the median are no longer valid.
        limit = temps[len(temps) // 2]
        block.register_map = [t.model_copy(update={"max_value": limit})
                              if t.column == "temperature" else t for t in block.register_map]
        block.save(name, overwrite=True)
    start = min(r[0] for r in before).replace(minute=0, second=0, microsecond=0)
    end = max(r[0] for r in before) + timedelta(hours=1)
    stack.run("reprocess-raw/on-demand", start=start.isoformat(), end=end.isoformat(),
              devices=[name], raw_logs=raw, target_db=warehouse,
              hourly_source_db=warehouse, hourly_target_db=warehouse, timezone="UTC")
    keep = [r for r in before if r[1] <= limit]
    hot = sorted(r[1] for r in before if r[1] > limit)
    t = get_tables(None)
    with engine.connect() as conn:
        quarantined = sorted(json.loads(r.record)["temperature"] for r in conn.execute(
            select(t.quarantine.c.record).where(t.quarantine.c.source == f"modbus:{name}")))
        hourly = conn.execute(select(t.temperature_hourly).where(
            t.temperature_hourly.c.loc_id == loc)).mappings().all()
    after = _rp_raw(engine, loc)
    engine.dispose()
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="raw/")
    lines = [json.loads(x) for p in pages for o in p.get("Contents", [])
             for x in s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().splitlines()]
    print("\nDOCKER REPROCESS FIGURES", {"captured": len(before), "limit": limit,
                                        "valid_after": len(after),
                                        "quarantined": len(quarantined),
                                        "landed_lines": len(lines),
                                        "hourly_samples": sum(h["sample_count"]
                                                              for h in hourly)})
    assert hot and after == keep
    assert quarantined == hot
    assert sorted(ln["temperature"] for ln in lines if ln["verdict"] == "valid") == \
        sorted(r[1] for r in keep)
    assert sorted(ln["temperature"] for ln in lines if ln["verdict"] == "rejected") == hot
    assert sum(h["sample_count"] for h in hourly) == len(keep)
    assert max(h["temperature_max"] for h in hourly) <= limit


def test_master_data_sync_in_a_container(stack: Stack, pg_server_url: str) -> None:
    """master-data-sync from a source database into a target of its own (both on the
    host's PostgreSQL): upserted, added, a missing location deactivated, a bad source row
    quarantined (the run Completed as Degraded)."""
    def loc(**values: object) -> dict:
        return {**dict.fromkeys(LOCATION_COLUMNS), **values}

    with throwaway_database(pg_server_url, "docker_master_src") as src_url, \
            throwaway_database(pg_server_url, "docker_master_dst") as dst_url:
        source, target = make_engine(src_url), make_engine(dst_url)
        tables = init_db(source)
        init_db(target)
        with source.begin() as conn:
            conn.execute(insert(tables.location), [
                loc(loc_id="A", name="oven", site="P1", temperature_min=10.0,
                    temperature_max=30.0, active=True),
                loc(loc_id="B", name="bad", humidity_min=80.0, humidity_max=20.0,
                    active=True),
                loc(loc_id="C", name="press", active=True)])
        with target.begin() as conn:
            conn.execute(insert(tables.location), [
                loc(loc_id="A", name="old name", temperature_max=99.0, active=True),
                loc(loc_id="B", name="last good", humidity_max=70.0, active=True),
                loc(loc_id="D", name="removed line", active=True)])
        done = stack.run("master-data-sync/daily", source_db=stack.save_connector(src_url),
                         target_db=stack.save_connector(dst_url))
        with target.connect() as conn:
            got = {r["loc_id"]: (r["name"], r["site"], r["temperature_max"], r["active"])
                   for r in conn.execute(select(tables.location)).mappings()}
            quarantine = conn.execute(select(tables.quarantine)).mappings().all()
        source.dispose()
        target.dispose()
    print("\nDOCKER MASTER SYNC FIGURES", {"state": done["state_name"], "target": got,
                                          "quarantined": len(quarantine)})
    assert done["state_name"] == "Degraded", done["state"]
    assert "1 of 3 source locations quarantined" in done["state"]["message"]
    assert got == {"A": ("oven", "P1", 30.0, True), "B": ("last good", None, None, True),
                   "C": ("press", None, None, True), "D": ("removed line", None, None, False)}
    assert [(q["source"], json.loads(q["record"])["loc_id"]) for q in quarantine] == [
        ("master-data-sync", "B")]


def test_refresh_credentials_in_a_container(stack: Stack, pg_server_url: str,
                                            s3_endpoint: str) -> None:
    """refresh-credentials with moto's Secrets Manager (127.0.0.1): a database block on
    login role A, its secret rotated to role B (as AWS's alternating-users rotation does);
    the container checks B connects and saves it into the block. The test server trusts
    127.0.0.1, so the switch of user, not of password, is what shows the block changed."""
    tag = uuid.uuid4().hex[:8]
    roles = {f"sf_dock_a_{tag}": f"pw-a-{tag}", f"sf_dock_b_{tag}": f"pw-b-{tag}"}
    admin = create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    sm = boto3.client("secretsmanager", endpoint_url=s3_endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    secret = f"shopfloor/docker/{tag}"
    url = make_url(stack.db_url)
    try:
        with admin.connect() as conn:
            for role, password in roles.items():
                # Test-made names and values: no bound parameters in CREATE ROLE.
                conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
        old, new = roles
        block = stack.save(connector_from_url(url.set(
            username=old, password=roles[old]).render_as_string(hide_password=False)),
            "docker-rot")
        sm.create_secret(Name=secret, SecretString=json.dumps({
            "engine": "postgres", "host": url.host, "port": url.port or 5432,
            "username": new, "password": roles[new], "dbname": url.database}))
        aws = stack.save(_moto_creds(s3_endpoint), "docker-aws")
        done = stack.run("refresh-credentials/weekly", block_secrets={block: secret},
                         aws_credentials=aws)
        with temporary_settings(updates={PREFECT_API_URL: stack.env["PREFECT_API_URL"]}):
            refreshed = make_url(connector_url(SqlAlchemyConnector.load(block)))
        engine = create_engine(refreshed)
        with engine.connect() as conn:
            user = conn.execute(text("SELECT current_user")).scalar_one()
        engine.dispose()
        print("\nDOCKER REFRESH FIGURES", {"state": done["state_name"],
                                          "block_user": refreshed.username})
        assert done["state_name"] == "Completed", done["state"]
        assert (refreshed.username, refreshed.password, refreshed.database) == (
            new, roles[new], url.database)
        assert user == new
    finally:
        sm.delete_secret(SecretId=secret, ForceDeleteWithoutRecovery=True)
        with admin.connect() as conn:
            for role in roles:
                conn.execute(text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()


def _moto_creds(endpoint: str) -> AwsCredentials:
    return AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing",
                          region_name="us-east-1",
                          aws_client_parameters=AwsClientParameters(endpoint_url=endpoint))


def _rp_raw(engine: Engine, loc: str) -> list[tuple]:
    """The location's temperature_raw rows: (capture time, temperature, humidity)."""
    r = get_tables(None).temperature_raw
    with engine.connect() as conn:
        return [tuple(x) for x in conn.execute(
            select(r.c.capture_dt, r.c.temperature, r.c.humidity)
            .where(r.c.loc_id == loc).order_by(r.c.capture_dt))]
