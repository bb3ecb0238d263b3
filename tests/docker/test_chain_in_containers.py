"""The scheduled chain in containers: capture -> landing -> registration -> compaction ->
hourly aggregation, every run in its own container of `shopfloor:latest` on a Docker
work pool made from deployments/docker-pool.json, started by a Docker worker
(`prefect worker start --type docker`, prefect-docker pinned in pyproject.toml).

Everything is real: a `prefect server` (on PostgreSQL), `shopfloor deploy` of the repo's
prefect.yaml onto the pool (`--no-build --image shopfloor:latest`), `shopfloor simulate
modbus` on 127.0.0.1 with the containers on the host's network, the warehouse and the
registry in a PostgreSQL database, the landing and the lake in a bucket of moto's S3 server
on 127.0.0.1 (`shopfloor blocks bootstrap` with SHOPFLOOR_S3_BUCKET and
SHOPFLOOR_S3_ENDPOINT_URL, as a plant on S3 or MinIO sets it), and the store-and-forward
buffer on a bind-mounted SHOPFLOOR_HOME.

The crons are compressed by `shopfloor deploy --override` (as the soak does): capture every
minute with a 60 s window from 90 s after the minute, registration, compaction and
aggregation every minute at seconds 15, 40 and 50; they run for
SHOPFLOOR_DOCKER_CHAIN_SECONDS (default 300, the issue's five minutes), longer until each
has completed a run. Then the
schedules are paused and what is left is registered, compacted and aggregated by
`prefect deployment run --param` (the good value); a bad value is refused with no run
created. Each stage's rows are counted at the next stage and must match; no container
may be left.
"""

import io
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest
import yaml
from sqlalchemy import create_engine, text

from deployments.docker_pool import load_template
from shopfloor.modbus.simulator import free_port_run
from tests.conftest import free_port
from tests.docker.dockerlib import (
    CONTAINER_HOME,
    IMAGE,
    docker,
    remove_pool_containers,
    wait_no_containers,
)
from tests.e2e.servers import BIN, ROOT, api, clean_env, prefect_server, sh, stop
from tests.pg import throwaway_database
from tests.prefect_harness import asyncpg_url

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1200)]

CHAIN_SECONDS = float(os.environ.get("SHOPFLOOR_DOCKER_CHAIN_SECONDS", "300"))
DEVICES = {"dock-1": ("DOCK1", "D01"), "dock-2": ("DOCK2", "D02")}
# API names (flow/deployment) of the chain; every other deployment stays paused.
CHAIN = ("modbus-capture/every-hour", "register-s3-keys/every-15-minutes",
         "s3-compaction/hourly", "hourly-aggregation/hourly")


def _every_minute_at(second: int) -> list[dict]:
    return [{"interval": 60, "anchor_date": f"2026-01-01T00:00:{second:02d}Z",
             "timezone": "UTC"}]


OVERRIDE = {"deployments": {
    "modbus_capture/every-hour": {
        "schedules": [{"cron": "* * * * *", "timezone": "UTC"}],
        # The window starts 90 s after the scheduled minute (the default is 30 s): a
        # loaded machine was seen to start the containers 1.5-3 min late, past the
        # whole window. Runs then overlap by about three, hence the limit of 4.
        "parameters": {"devices": list(DEVICES), "span_seconds": 60,
                       "start_offset_seconds": 90},
        "concurrency_limit": {"limit": 4, "collision_strategy": "ENQUEUE"}},
    "register_s3_keys/every-15-minutes": {"schedules": _every_minute_at(15)},
    "s3_compaction/hourly": {"schedules": _every_minute_at(40)},
    "hourly_aggregation/hourly": {"schedules": _every_minute_at(50)},
}}


@pytest.fixture
def databases(pg_server_url: str) -> Iterator[tuple[str, str]]:
    """(the chain's database, the Prefect server's database): SQLite would lock up under
    a chain's events and logs, as in the soak."""
    with throwaway_database(pg_server_url, "docker_chain") as chain, \
            throwaway_database(pg_server_url, "docker_prefect") as prefect_db:
        yield chain, asyncpg_url(prefect_db)


def _in_container(env: dict[str, str], home: Path, pool: str, *cmd: str,
                  extra: dict[str, str] | None = None) -> str:
    """A one-off command in the image, as the flow runs see the world (host network, the
    same SHOPFLOOR_HOME mount), labelled with the pool so the clean-up finds it; ``extra``
    are more environment variables."""
    variables = {"PREFECT_API_URL": env["PREFECT_API_URL"],
                 "SHOPFLOOR_DB_URL": env["SHOPFLOOR_DB_URL"], **(extra or {})}
    res = docker("run", "--rm", "--network", "host", "--label",
                 f"io.prefect.work-pool-name={pool}", "-v", f"{home}:{CONTAINER_HOME}",
                 *[a for k, v in variables.items() for a in ("-e", f"{k}={v}")],
                 IMAGE, *cmd, check=False, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def _simulator(env: dict[str, str], log: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [str(BIN / "shopfloor"), "simulate", "modbus", "--port", str(port), "--devices",
         str(len(DEVICES))], env=env, cwd=ROOT, stdout=open(log, "w"),
        stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while "serving" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    return proc


def _chain_deployments(env: dict[str, str]) -> dict[str, dict]:
    found = {}
    for name in CHAIN:
        flow, dep = name.split("/")
        found[name] = api(env, "GET", f"/deployments/name/{flow}/{dep}").json()
    return found


def _mount_and_start(env: dict[str, str], deps: dict[str, dict], home: Path) -> None:
    """The chain's deployments get this test's SHOPFLOOR_HOME (a bind mount in place of the
    named volumes; a plant sets its own volumes the same way) and their schedules on."""
    for dep in deps.values():
        jv = {**(dep.get("job_variables") or {}), "volumes": [f"{home}:{CONTAINER_HOME}"]}
        api(env, "PATCH", f"/deployments/{dep['id']}", json={"job_variables": jv})
        for sched in dep["schedules"]:
            api(env, "PATCH", f"/deployments/{dep['id']}/schedules/{sched['id']}",
                json={"active": True})


def _runs(env: dict[str, str], deployment_id: str) -> list[dict]:
    return api(env, "POST", "/flow_runs/filter", json={
        "deployments": {"id": {"any_": [deployment_id]}}, "limit": 200}).json()


def _scheduled_states(env: dict[str, str], deps: dict[str, dict], deadline: float
                      ) -> dict[str, list[str]]:
    """The state types of each deployment's runs, once every one has a completed run or
    at the deadline (a loaded machine starts containers minutes late: waiting longer
    there costs nothing on a quiet one)."""
    while True:
        states = {name: [r["state_type"] for r in _runs(env, d["id"])]
                  for name, d in deps.items()}
        if all("COMPLETED" in s for s in states.values()) or time.time() > deadline:
            return states
        time.sleep(5)


def _drain(env: dict[str, str], deps: dict[str, dict]) -> None:
    """Schedules off, nothing left waiting, every running capture ended (it lands its last
    batch at the end of its window)."""
    for dep in deps.values():
        api(env, "PATCH", f"/deployments/{dep['id']}", json={"paused": True})
    for auto in api(env, "POST", "/automations/filter", json={}).json():
        if auto["name"] == "shopfloor-capture-restart":
            api(env, "PATCH", f"/automations/{auto['id']}", json={"enabled": False})
    for run in api(env, "POST", "/flow_runs/filter", json={
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}).json():
        api(env, "POST", f"/flow_runs/{run['id']}/set_state", json={
            "state": {"type": "CANCELLED", "name": "Cancelled"}, "force": True})
    deadline = time.time() + 240
    busy = {"any_": ["SCHEDULED", "PENDING", "RUNNING"]}
    while time.time() < deadline:
        if not api(env, "POST", "/flow_runs/filter",
                   json={"flow_runs": {"state": {"type": busy}}}).json():
            return
        time.sleep(3)
    raise AssertionError("runs still busy 240 s after the schedules were paused")


def _run_to_end(env: dict[str, str], deployment: str, *params: str) -> str:
    args = [str(BIN / "prefect"), "deployment", "run", deployment, "--watch",
            "--watch-timeout", "300"]
    for p in params:
        args += ["--param", p]
    res = sh(env, *args, check=False, timeout=360)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    return out


def _bucket_keys(s3, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for p in pages for o in p.get("Contents", [])]


def _landed(s3, bucket: str) -> tuple[int, int]:
    """(raw JSON objects, lines in them) under the bucket's raw/ prefix (the landing)."""
    keys = [k for k in _bucket_keys(s3, bucket, "raw/") if k.endswith(".json")]
    return len(keys), sum(len(s3.get_object(Bucket=bucket, Key=k)["Body"].read().splitlines())
                          for k in keys)


def _lake_rows(s3, bucket: str) -> tuple[int, int]:
    """(Parquet rows under the bucket's lake/ prefix, duplicate (device, heartbeat) rows)."""
    seen: set[tuple] = set()
    rows = dupes = 0
    for key in _bucket_keys(s3, bucket, "lake/"):
        if not key.endswith(".parquet") or "/_" in key:
            continue  # staging and manifests, not published data
        table = pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()),
                              columns=["device", "heartbeat"])
        for pair in zip(*[c.to_pylist() for c in table.columns], strict=True):
            rows += 1
            dupes += pair in seen
            seen.add(pair)
    return rows, dupes


def _warehouse(url: str) -> dict:
    engine = create_engine(url)
    with engine.connect() as conn:
        figures = {
            "raw_rows": conn.execute(text("SELECT count(*) FROM temperature_raw")).scalar_one(),
            "registry": dict(conn.execute(text(
                "SELECT compression_status, count(*) FROM s3_object GROUP BY 1")).all()),
            "hourly_rows": conn.execute(text(
                "SELECT count(*) FROM temperature_hourly")).scalar_one(),
            "hourly_samples": conn.execute(text(
                "SELECT coalesce(sum(sample_count), 0) FROM temperature_hourly")).scalar_one(),
            # Both ways: an hourly row without its raw group, a raw group without its row.
            "hourly_differing": conn.execute(text("""
                SELECT count(*) FROM temperature_hourly h
                FULL JOIN (SELECT loc_id,
                                  to_char(date_trunc('hour', capture_dt), 'YYYYMMDD') ymd,
                                  to_char(date_trunc('hour', capture_dt), 'HH24') hh,
                                  count(temperature) n, max(temperature) mx,
                                  avg(temperature) av
                           FROM temperature_raw GROUP BY 1, 2, 3) r
                  ON r.loc_id = h.loc_id AND r.ymd = h.ymd AND r.hh = h.hh
                WHERE r.n IS NULL OR h.loc_id IS NULL OR r.n <> h.sample_count
                   OR r.mx <> h.temperature_max OR abs(r.av - h.temperature_avg) > 1e-9
            """)).scalar_one(),
            "first": conn.execute(text("SELECT min(capture_dt) FROM temperature_raw"))
            .scalar_one(),
        }
    engine.dispose()
    return figures


def test_the_chain_runs_in_containers_on_its_schedules(tmp_path: Path, databases,
                                                      s3_endpoint: str) -> None:
    chain_db, prefect_db = databases
    # The landing and the lake: a bucket of its own on the session's moto server, which
    # the containers reach on the host's network.
    bucket = f"docker-chain-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket=bucket)
    s3_env = {"SHOPFLOOR_S3_BUCKET": bucket, "SHOPFLOOR_S3_ENDPOINT_URL": s3_endpoint,
              "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
              "AWS_DEFAULT_REGION": "us-east-1"}
    tag = uuid.uuid4().hex[:8]
    pool = f"shopfloor-docker-{tag}"
    # The containers' SHOPFLOOR_HOME: written by uid 10001 (the image's user).
    home = tmp_path / "container-home"
    home.mkdir()
    home.chmod(0o777)
    env = clean_env()
    env.update({"PREFECT_LOGGING_LEVEL": "INFO", "SHOPFLOOR_DB_URL": chain_db,
                "SHOPFLOOR_HOME": str(tmp_path / "host-home"),
                "PREFECT_API_DATABASE_CONNECTION_URL": prefect_db})
    procs: list[subprocess.Popen] = []
    worker = None
    try:
        with prefect_server(tmp_path, env, free_port()):
            template = tmp_path / "pool.json"
            template.write_text(json.dumps(load_template(env["PREFECT_API_URL"])))
            sh(env, str(BIN / "prefect"), "work-pool", "create", pool, "--type", "docker",
               "--base-job-template", str(template))
            # The blocks and the tables from inside the image, where the flows run: raw
            # logs under s3://bucket/raw, the lake under s3://bucket/lake, moto's endpoint
            # and its test keys in the shopfloor-aws block.
            _in_container(env, home, pool, "shopfloor", "blocks", "bootstrap", extra=s3_env)
            _in_container(env, home, pool, "shopfloor", "db", "init")
            port = free_port_run(len(DEVICES))
            procs.append(_simulator(env, tmp_path / "simulator.log", port))
            for i, (name, (loc, district)) in enumerate(DEVICES.items()):
                sh(env, str(BIN / "shopfloor"), "modbus", "add-device", name, "--map",
                   str(ROOT / "maps" / "simulator.yaml"), "--loc-id", loc, "--host",
                   "127.0.0.1", "--port", str(port + i), "--dstrct-code", district)
            override = tmp_path / "override.yaml"
            override.write_text(yaml.safe_dump(OVERRIDE))
            out = sh(env, str(BIN / "shopfloor"), "deploy", "--no-build", "--image", IMAGE,
                     "--pool", pool, "--paused", "--override", str(override)).stdout
            assert f"deployments to {pool}" in out, out
            deps = _chain_deployments(env)
            assert all(d["work_pool_name"] == pool for d in deps.values()), deps
            _mount_and_start(env, deps, home)
            worker = subprocess.Popen(
                [str(BIN / "prefect"), "worker", "start", "--type", "docker", "--pool", pool,
                 "--name", f"chain-{tag}", "--prefetch-seconds", "30"],
                env=env, cwd=ROOT, stdout=open(tmp_path / "worker.log", "w"),
                stderr=subprocess.STDOUT, start_new_session=True)
            t0 = time.time()

            # A bad parameter is refused before a run is created (enforce_parameter_schema).
            aggregation = deps["hourly-aggregation/hourly"]
            bad = sh(env, str(BIN / "prefect"), "deployment", "run",
                     "hourly-aggregation/hourly", "--param", "start=not-a-time", check=False)
            assert bad.returncode != 0, bad.stdout + bad.stderr
            assert "start" in bad.stdout + bad.stderr, bad.stdout + bad.stderr
            assert not [r for r in _runs(env, aggregation["id"])
                        if r["parameters"].get("start") == "not-a-time"]

            time.sleep(max(0.0, t0 + CHAIN_SECONDS - time.time()))
            scheduled = _scheduled_states(env, deps, deadline=time.time() + 300)
            _drain(env, deps)
            _run_to_end(env, "register-s3-keys/every-15-minutes")
            _run_to_end(env, "s3-compaction/hourly")
            # The scheduled aggregations write closed hours only: every hour the chain
            # sampled is written on request (the good --param value) and compared.
            first = _warehouse(chain_db)["first"]
            assert first is not None, "nothing was captured"
            first = first.replace(tzinfo=UTC) if first.tzinfo is None else first.astimezone(UTC)
            start = first.replace(minute=0, second=0, microsecond=0)
            end = datetime.fromtimestamp((int(time.time()) // 3600 + 1) * 3600, UTC)
            _run_to_end(env, "hourly-aggregation/hourly", f"start={start.isoformat()}",
                        f"end={end.isoformat()}")
            stop(worker, signal.SIGINT)
            left = wait_no_containers("io.prefect.work-pool-name", pool, timeout=60)

            objects, lines = _landed(s3, bucket)
            parquet_rows, dupes = _lake_rows(s3, bucket)
            wh = _warehouse(chain_db)
            figures = {"scheduled_runs": scheduled, "objects_landed": objects,
                       "lines_landed": lines, "parquet_rows": parquet_rows,
                       "duplicates": dupes, **wh}
            print("\nDOCKER CHAIN FIGURES", figures)
            # Every stage ran on its schedule, in containers, and completed at least once.
            for name, states in scheduled.items():
                assert "COMPLETED" in states, (name, figures)
            assert objects > 0 and lines > 0, figures
            # capture -> landing: every reading stored is landed, once.
            assert lines == wh["raw_rows"], figures
            # landing -> registration: every object registered, and compacted.
            assert wh["registry"] == {"SUCCESS": objects}, figures
            # compaction: every landed line is one Parquet row, none twice.
            assert parquet_rows == lines and dupes == 0, figures
            # aggregation: every raw reading counted in its hour, nothing else.
            assert wh["hourly_rows"] > 0 and wh["hourly_differing"] == 0, figures
            assert wh["hourly_samples"] == wh["raw_rows"], figures
            assert not left, f"containers left: {left}"
    finally:
        if worker is not None:
            stop(worker, signal.SIGINT)
        for p in procs:
            stop(p, signal.SIGTERM, timeout=30)
        remove_pool_containers(pool)
