"""The soak test: the scheduled chain runs on its own on a real Prefect server and a
`shopfloor worker`, against PostgreSQL, moto's S3 and five simulated PLCs, while faults
are injected; then the data is checked to the last row.

Schedules are compressed by an override file (`shopfloor deploy --override`), never by a
second prefect.yaml. Faults: one device dead for a while, the worker `kill -9`ed and
restarted, moto's S3 server stopped for S3_OUTAGE_SECONDS, the warehouse PostgreSQL
(a private cluster) stopped with ``pg_ctl stop -m immediate`` for
WAREHOUSE_OUTAGE_SECONDS, every PostgreSQL connection terminated, and one compaction run
frozen (SIGSTOP) between staging and publishing for longer than its claim TTL. Capture
keeps polling through the outages into its store-and-forward buffer
(docs/store_and_forward.md): not one slot may be lost or stored twice.

`SHOPFLOOR_SOAK_SECONDS` sets how long the chain runs: `make soak` runs 660 s; `make test`
runs the short version (180 s). docs/operations.md records the figures of a `make soak`.
"""

import io
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest
import yaml
from sqlalchemy import create_engine, text

from shopfloor.modbus.simulator import free_port_run
from tests.conftest import free_port
from tests.e2e.servers import BIN, ROOT, api, clean_env, marked_pids, prefect_server, sh, stop
from tests.pg import throwaway_database
from tests.pgcluster import PrivateCluster, private_cluster
from tests.prefect_harness import asyncpg_url

SOAK_SECONDS = float(os.environ.get("SHOPFLOOR_SOAK_SECONDS", "180"))
LONG = SOAK_SECONDS >= 600
OUTAGE_SECONDS = 120 if LONG else 40
INTERVAL = 5.0
DEVICES = {  # block name: (loc_id, district)
    "soak-1": ("SOAK1", "D01"), "soak-2": ("SOAK2", "D01"), "soak-3": ("SOAK3", "D01"),
    "soak-4": ("SOAK4", "D02"), "soak-5": ("SOAK5", "D02"),
}
DEAD = "soak-5"  # the device taken down for OUTAGE_SECONDS
KILL_GAP_SECONDS = 90  # a killed worker's capture: restart automation + a worker restart
WAREHOUSE_OUTAGE_SECONDS = 60
S3_OUTAGE_SECONDS = 30
pytestmark = [pytest.mark.long, pytest.mark.timeout(int(SOAK_SECONDS) + 1200)]


class _Hooks(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            self.received.append(json.loads(body))
        except ValueError:
            self.received.append({"raw": body.decode(errors="replace")})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def listener() -> Iterator[tuple[str, list[dict]]]:
    """A local webhook receiver: the notification target."""
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Hooks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", _Hooks.received
    server.shutdown()


def _every_minute_at(second: int) -> list[dict]:
    """Every minute at ``second``: the chain's runs start at different seconds, as their
    crons spread them over the hour in a plant, not all at once on two cores."""
    return [{"interval": 60, "anchor_date": f"2026-01-01T00:00:{second:02d}Z",
             "timezone": "UTC"}]


def _override(devices: list[str]) -> dict:
    return {
        "deployments": {
            "modbus_capture/every-hour": {
                "schedules": [{"cron": "* * * * *", "timezone": "UTC"}],
                "parameters": {"devices": devices, "span_seconds": 60},
                # A 60 s span: the run still landing its last batch, the one sampling
                # and the next one (started 30 s early by the worker's prefetch).
                "concurrency_limit": {"limit": 3, "collision_strategy": "ENQUEUE"},
            },
            "register_s3_keys/every-15-minutes": {"schedules": _every_minute_at(15)},
            "register_s3_keys/daily-full-listing": {"schedules": []},
            "s3_compaction/hourly": {"schedules": _every_minute_at(40),
                                     "parameters": {"claim_ttl_minutes": 1}},
            "hourly_aggregation/hourly": {"schedules": _every_minute_at(50)},
            "master_data_sync/daily": {"schedules": []},
            "spark_sensor_extraction/daily": {"schedules": []},
            # Not in the soak's chain: its files under lake/tag_samples/ have no
            # (device, heartbeat) columns for _lake() to count.
            "tag_lake_export/hourly": {"schedules": []},
        },
        "automations": {
            "shopfloor-capture-stale": {"within": 90},
            "shopfloor-lake-stale": {"within": 300},
        },
    }




class RestartableS3:
    """moto's S3 server on a fixed port that the test stops and starts again (moto's
    state lives in this process: buckets and objects outlive a restart)."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._make = ThreadedMotoServer
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.server = None
        self.start()

    def start(self) -> None:
        self.server = self._make(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


class Soak:
    """The running system and what the test did to it, with times (epoch seconds)."""

    def __init__(self, env: dict[str, str], home: Path, pg_url: str, bucket: str) -> None:
        self.env, self.home, self.pg_url, self.bucket = env, home, pg_url, bucket
        self.warehouse: PrivateCluster | None = None
        self.s3: RestartableS3 | None = None
        self.procs: list[subprocess.Popen] = []
        self.worker: subprocess.Popen | None = None
        self.events: dict[str, float] = {}
        self.server: subprocess.Popen | None = None  # stopped by its fixture

    def spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.home / f"{name}.log", "a")
        proc = subprocess.Popen(list(args), env=self.env, cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def simulator(self, port: int, count: int, name: str) -> subprocess.Popen:
        proc = self.spawn(name, str(BIN / "shopfloor"), "simulate", "modbus", "--port",
                          str(port), "--devices", str(count))
        deadline = time.monotonic() + 60
        while "serving" not in (self.home / f"{name}.log").read_text():
            assert proc.poll() is None and time.monotonic() < deadline, \
                (self.home / f"{name}.log").read_text()
            time.sleep(0.2)
        return proc

    def start_worker(self) -> None:
        self.worker = self.spawn("worker", str(BIN / "shopfloor"), "worker", "--pool",
                                 "shopfloor-process", "--grace-seconds", "60")


def _sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.time()))


def _next_minute(after: float, second: float) -> float:
    """The next wall-clock time ``hh:mm:second`` after ``after``."""
    base = (int(after) // 60) * 60 + second
    return base if base > after else base + 60


def _taken_over(pg_url: str, run_id: str) -> bool:
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        held = conn.execute(text(
            "SELECT count(*) FROM s3_object WHERE compression_run_id = :r "
            "AND compression_status = 'CLAIMED'"), {"r": run_id}).scalar_one()
    engine.dispose()
    return held == 0


def _freeze_compaction(soak: Soak, marker_file: Path) -> None:
    """Register what has landed, then start a compaction that pauses after staging and
    freeze it (SIGSTOP: its claim renewal stops too) until a scheduled compaction has
    taken its keys over (one-minute claim TTL), then let it go on. Tried again when a
    scheduled compaction claimed everything first."""
    for attempt in range(3):
        _run_to_end(soak, "register-s3-keys/every-15-minutes")
        if _freeze_once(soak, marker_file, attempt):
            return


def _freeze_once(soak: Soak, marker_file: Path, attempt: int) -> bool:
    resume_file = marker_file.with_suffix(".resume")
    pause_env = {"SHOPFLOOR_FAULT_PAUSE_AT": "after_stage",
                 "SHOPFLOOR_FAULT_PAUSE_FILE": str(marker_file),
                 "SHOPFLOOR_FAULT_RESUME_FILE": str(resume_file)}
    dep = api(soak.env, "GET", "/deployments/name/s3-compaction/hourly").json()
    run = api(soak.env, "POST", f"/deployments/{dep['id']}/create_flow_run", json={
        "parameters": {"claim_ttl_minutes": 1}, "job_variables": {"env": pause_env},
        "name": f"soak-frozen-compaction-{attempt}"}).json()
    deadline = time.time() + 120
    while not marker_file.exists():
        state = api(soak.env, "GET", f"/flow_runs/{run['id']}").json()["state_type"]
        if state in ("COMPLETED", "FAILED", "CRASHED") or time.time() > deadline:
            return False  # it found nothing pending
        time.sleep(0.5)
    soak.events["frozen_run"] = run["id"]  # type: ignore[assignment]
    pids = marked_pids(str(marker_file))
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    soak.events["frozen_at"] = time.time()
    deadline = time.time() + 240
    while not _taken_over(soak.pg_url, run["id"]) and time.time() < deadline:
        time.sleep(2)
    resume_file.write_text("go")
    for pid in pids:
        os.kill(pid, signal.SIGCONT)
    soak.events["thawed_at"] = time.time()
    return True


def _terminate_connections(pg_url: str) -> int:
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        n = conn.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar_one()
    admin.dispose()
    return int(n)


def _disable_automation(soak: Soak, name: str) -> None:
    for auto in api(soak.env, "POST", "/automations/filter", json={}).json():
        if auto["name"] == name:
            api(soak.env, "PATCH", f"/automations/{auto['id']}", json={"enabled": False})


def _cancel_scheduled(soak: Soak) -> None:
    """Cancel every run not yet submitted (scheduled, late, awaiting a slot)."""
    runs = api(soak.env, "POST", "/flow_runs/filter",
               json={"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}).json()
    for run in runs:
        api(soak.env, "POST", f"/flow_runs/{run['id']}/set_state",
            json={"state": {"type": "CANCELLED", "name": "Cancelled"}, "force": True})


def _wait_until_quiet(soak: Soak, seconds: float = 240) -> None:
    """Until no run is scheduled, pending or running (the last capture lands its last
    batch at the end of its window)."""
    deadline = time.time() + seconds
    busy = {"any_": ["SCHEDULED", "PENDING", "RUNNING"]}
    while time.time() < deadline:
        runs = api(soak.env, "POST", "/flow_runs/filter",
                   json={"flow_runs": {"state": {"type": busy}}}).json()
        if not runs:
            return
        time.sleep(3)


def _soak_hours(soak: Soak) -> list[str]:
    """``start=``/``end=`` parameters covering every hour the soak sampled."""
    first = int(soak.events["first_slot"]) // 3600 * 3600
    last = (int(time.time()) // 3600 + 1) * 3600
    return [f"start={datetime.fromtimestamp(first, UTC).isoformat()}",
            f"end={datetime.fromtimestamp(last, UTC).isoformat()}"]


def _run_to_end(soak: Soak, deployment: str, *params: str) -> str:
    args = [str(BIN / "prefect"), "deployment", "run", deployment, "--watch",
            "--watch-timeout", "300"]
    for p in params:
        args += ["--param", p]
    res = sh(soak.env, *args, check=False, timeout=360)
    return res.stdout + res.stderr


@pytest.fixture(scope="module")
def prefect_db(pg_server_url: str) -> Iterator[str]:
    """A PostgreSQL database for the Prefect server: SQLite locks up under a busy chain
    (events, heartbeats, automations), as it would in a plant."""
    with throwaway_database(pg_server_url, "soak_prefect") as url:
        yield asyncpg_url(url)


@pytest.fixture(scope="module")
def warehouse() -> Iterator[PrivateCluster]:
    """The chain's warehouse on a private PostgreSQL cluster, which the test stops and
    starts (the shared server stays up for everything else, the Prefect server too)."""
    with private_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def soak_db(warehouse: PrivateCluster) -> Iterator[str]:
    """The chain's own database: the checks read whole tables, so no other test's rows
    may be there."""
    with throwaway_database(warehouse.url, "soak_chain") as url:
        yield url


@pytest.fixture(scope="module")
def soak_s3() -> Iterator[RestartableS3]:
    """The chain's own S3 (the session's moto server is shared with other tests)."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    s3 = RestartableS3()
    yield s3
    s3.stop()


@pytest.fixture(scope="module")
def soak(tmp_path_factory, soak_db, warehouse, soak_s3, listener, prefect_db
         ) -> Iterator[Soak]:
    home = tmp_path_factory.mktemp("soak")
    bucket = f"soak-{uuid.uuid4().hex[:8]}"
    s3_endpoint = soak_s3.endpoint
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(
        Bucket=bucket)
    marker = f"soak-{uuid.uuid4().hex}"
    env = clean_env()
    env.update({
        "SHOPFLOOR_SOAK_MARKER": marker, "PREFECT_LOGGING_LEVEL": "INFO",
        "SHOPFLOOR_HOME": str(home / "shopfloor"), "SHOPFLOOR_DB_URL": soak_db,
        "SHOPFLOOR_S3_BUCKET": bucket, "SHOPFLOOR_S3_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "SHOPFLOOR_NOTIFY_WEBHOOK_URL": listener[0],
        "PREFECT_API_DATABASE_CONNECTION_URL": prefect_db,
        # The warehouse and S3 outages outlast this, so the buffer's alarm must reach the
        # webhook through the operations.yaml automation while they last.
        "SHOPFLOOR_BUFFER_ALERT_AGE_SECONDS": "15", "SHOPFLOOR_BUFFER_ALARM_EVERY_SECONDS": "5",
    })
    with prefect_server(home, env, free_port()) as server:
        s = Soak(env, home, soak_db, bucket)
        s.server, s.warehouse, s.s3 = server, warehouse, soak_s3
        try:
            yield s
        finally:
            if s.worker is not None:
                stop(s.worker, signal.SIGTERM, timeout=120)
            for p in s.procs:
                stop(p, signal.SIGTERM, timeout=30)


def test_the_chain_holds_for_its_run(soak: Soak, listener) -> None:
    env, shopfloor = soak.env, str(BIN / "shopfloor")
    live_port = free_port_run(4)
    dead_port = free_port_run(1)
    while dead_port in range(live_port, live_port + 4):
        dead_port = free_port_run(1)
    soak.simulator(live_port, 4, "sim-live")
    dead_sim = soak.simulator(dead_port, 1, "sim-dead")
    sh(env, shopfloor, "blocks", "bootstrap")
    sh(env, shopfloor, "db", "init")
    for i, (name, (loc, district)) in enumerate(DEVICES.items()):
        port = dead_port if name == DEAD else live_port + i
        sh(env, shopfloor, "modbus", "add-device", name, "--map",
           str(ROOT / "maps" / "simulator.yaml"), "--loc-id", loc, "--host", "127.0.0.1",
           "--port", str(port), "--dstrct-code", district)
    override = soak.home / "override.yaml"
    override.write_text(yaml.safe_dump(_override(list(DEVICES))))
    out = sh(env, shopfloor, "deploy", "--local", "--override", str(override)).stdout
    assert "shopfloor-notify-webhook" in out, out
    soak.start_worker()
    t0 = time.time()
    end = t0 + SOAK_SECONDS
    # The first capture run is the one scheduled for the next minute: its window opens
    # 30 s later. Every slot from there on is expected.
    soak.events["first_slot"] = _next_minute(t0, 0) + 30

    # Device outage: from second 10 of a minute, OUTAGE_SECONDS long. Faults start a
    # minute in, once the server has loaded the new automations.
    soak.events["dead_from"] = _next_minute(t0 + max(60.0, 0.1 * SOAK_SECONDS), 10)
    _sleep_until(soak.events["dead_from"])
    stop(dead_sim, signal.SIGKILL)
    # S3 away while the device is dead and the worker is killed: captures buffer their
    # landing, registration and compaction fail and are told.
    assert soak.s3 is not None
    soak.s3.stop()
    soak.events["s3_down"] = time.time()
    # The worker is killed at second 20 and back at 25, before the next runs' prefetch.
    soak.events["worker_killed"] = _next_minute(time.time(), 20)
    _sleep_until(soak.events["worker_killed"])
    assert soak.worker is not None
    soak.worker.kill()
    soak.worker.wait()
    time.sleep(5)
    soak.start_worker()
    _sleep_until(soak.events["s3_down"] + S3_OUTAGE_SECONDS)
    soak.s3.start()
    soak.events["s3_up"] = time.time()
    _sleep_until(soak.events["dead_from"] + OUTAGE_SECONDS)
    soak.simulator(dead_port, 1, "sim-dead")
    soak.events["alive_again"] = time.time()
    # The warehouse goes away as in a maintenance restart gone long: capture keeps every
    # slot in its buffer and forwards the backlog when it is back.
    assert soak.warehouse is not None
    soak.warehouse.stop("immediate")
    soak.events["warehouse_down"] = time.time()
    _sleep_until(soak.events["warehouse_down"] + WAREHOUSE_OUTAGE_SECONDS)
    soak.warehouse.start()
    soak.events["warehouse_up"] = time.time()
    soak.events["pg_terminated"] = float(_terminate_connections(soak.pg_url))
    _freeze_compaction(soak, soak.home / "paused-at")
    _sleep_until(end)

    # Drain: stop the schedules, let running captures end, then register, compact and
    # aggregate what is left (on the same deployments, as a person would).
    for dep in api(env, "POST", "/deployments/filter", json={}).json():
        api(env, "PATCH", f"/deployments/{dep['id']}", json={"paused": True})
    # As a person stopping the chain would: no restart of a capture the zombie check
    # marks Crashed late, and no run left waiting for a slot (it would start mid-drain,
    # sample a window nobody compacts, and stretch the expected slots past the soak).
    _disable_automation(soak, "shopfloor-capture-restart")
    _cancel_scheduled(soak)
    _wait_until_quiet(soak)
    drain = [_run_to_end(soak, "register-s3-keys/every-15-minutes"),
             _run_to_end(soak, "s3-compaction/hourly", "claim_ttl_minutes=1"),
             _run_to_end(soak, "hourly-aggregation/hourly"),
             # The scheduled runs write closed hours only; a soak inside one hour has
             # none, so every hour it sampled is written on request too and compared.
             _run_to_end(soak, "hourly-aggregation/hourly", *_soak_hours(soak))]
    stop(soak.worker, signal.SIGTERM, timeout=120)
    leftovers = _leftovers(soak)
    figures = _figures(soak)
    figures["notifications"] = [n.get("subject", n) for n in listener[1]]
    (soak.home / "figures.json").write_text(json.dumps(figures, indent=2, default=str))
    print("\nSOAK FIGURES", json.dumps(figures, indent=2, default=str))
    _check(soak, figures, listener[1], leftovers, drain)


def _leftovers(soak: Soak) -> list[str]:
    """Command lines of processes this test started, other than its own simulators,
    still alive 30 s after the worker was stopped."""
    ours = {q.pid for q in soak.procs} | ({soak.server.pid} if soak.server else set())
    deadline = time.time() + 30
    while True:
        left = [p for p in marked_pids(soak.env["SHOPFLOOR_SOAK_MARKER"]) if p not in ours]
        if not left or time.time() > deadline:
            break
        time.sleep(1)
    found = []
    for pid in left:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # gone meanwhile
        found.append(f"{pid}: {cmd}")
    return found


def _slots(pg_url: str) -> dict[str, list[datetime]]:
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT loc_id, capture_dt FROM temperature_raw ORDER BY capture_dt")).all()
    engine.dispose()
    result: dict[str, list[datetime]] = {}
    for loc, dt in rows:
        result.setdefault(loc, []).append(dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt)
    return result


def _missing(slots: list[datetime], first: float, last: float) -> list[float]:
    have = {round(s.timestamp() / INTERVAL) for s in slots}
    return [k * INTERVAL for k in range(round(first / INTERVAL), round(last / INTERVAL) + 1)
            if k not in have]


def _lake(soak: Soak) -> tuple[int, int, int, int]:
    """(raw objects, raw lines, Parquet rows, duplicate (device, heartbeat) rows)."""
    s3 = boto3.client("s3", endpoint_url=soak.env["SHOPFLOOR_S3_ENDPOINT_URL"],
                      region_name="us-east-1")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=soak.bucket)
    keys = [o["Key"] for p in pages for o in p.get("Contents", [])]
    raw = [k for k in keys if k.startswith("raw/") and k.endswith(".json")]
    lines = sum(len(s3.get_object(Bucket=soak.bucket, Key=k)["Body"].read().splitlines())
                for k in raw)
    seen: set[tuple] = set()
    rows = dupes = 0
    for k in keys:
        if k.startswith("lake/") and k.endswith(".parquet") and "/_" not in k:
            table = pq.read_table(io.BytesIO(s3.get_object(Bucket=soak.bucket, Key=k)["Body"]
                                             .read()), columns=["device", "heartbeat"])
            for pair in zip(*[c.to_pylist() for c in table.columns], strict=True):
                rows += 1
                dupes += pair in seen
                seen.add(pair)
    return len(raw), lines, rows, dupes


def _figures(soak: Soak) -> dict:
    slots = _slots(soak.pg_url)
    all_slots = [s.timestamp() for v in slots.values() for s in v]
    first = soak.events["first_slot"]
    last = max(all_slots) if all_slots else first
    per_device = {}
    for name, (loc, _) in DEVICES.items():
        got = slots.get(loc, [])
        missing = _missing(got, first, last)
        per_device[name] = {"expected": round((last - first) / INTERVAL) + 1,
                            "stored": len(got), "missing": len(missing),
                            "missing_slots": missing}
    engine = create_engine(soak.pg_url)
    with engine.connect() as conn:
        status = dict(conn.execute(text(
            "SELECT compression_status, count(*) FROM s3_object GROUP BY 1")).all())
        # Both ways: an hourly row without its raw group, a raw group without its row.
        hourly_diff = conn.execute(text("""
            SELECT count(*) FROM temperature_hourly h
            FULL JOIN (SELECT loc_id, to_char(date_trunc('hour', capture_dt), 'YYYYMMDD') ymd,
                              to_char(date_trunc('hour', capture_dt), 'HH24') hh,
                              count(temperature) n, max(temperature) mx, avg(temperature) av
                       FROM temperature_raw GROUP BY 1, 2, 3) r
              ON r.loc_id = h.loc_id AND r.ymd = h.ymd AND r.hh = h.hh
            WHERE r.n IS NULL OR h.loc_id IS NULL OR r.n <> h.sample_count
               OR r.mx <> h.temperature_max OR abs(r.av - h.temperature_avg) > 1e-9
        """)).scalar_one()
        hourly_rows = conn.execute(text("SELECT count(*) FROM temperature_hourly")).scalar_one()
    engine.dispose()
    objects, lines, parquet_rows, dupes = _lake(soak)
    states: dict[str, int] = {}
    for r in api(soak.env, "POST", "/flow_runs/filter", json={"limit": 200}).json():
        key = f"{r['state_name']}"
        states[key] = states.get(key, 0) + 1
    actions = api(soak.env, "POST", "/events/filter", json={
        "filter": {"event": {"prefix": ["prefect.automation."]}}, "limit": 50}).json()
    fired: dict[str, int] = {}
    for e in actions["events"]:
        name = f"{e['resource'].get('prefect.resource.name')}: {e['event']}"
        fired[name] = fired.get(name, 0) + 1
    return {"seconds": SOAK_SECONDS, "samples": per_device, "events": soak.events,
            "objects_landed": objects, "registry": status, "rows_landed": lines,
            "rows_in_parquet": parquet_rows, "duplicate_rows": dupes,
            "hourly_rows": hourly_rows, "hourly_rows_differing_from_raw": hourly_diff,
            "run_states": states, "automation_events": fired}


def _check(soak: Soak, f: dict, notes: list[dict], leftovers: list[str],
           drain: list[str]) -> None:
    killed = soak.events["worker_killed"]
    for name, s in f["samples"].items():
        # Killing the worker crashes its running capture (Prefect stops a dead worker's
        # flow processes); the restart automation continues that window at once. Slots
        # between the kill and the restarted run's first sample are the only gap allowed.
        outside = [t for t in s["missing_slots"]
                   if not killed - INTERVAL <= t <= killed + KILL_GAP_SECONDS]
        if name == DEAD:  # its outage, plus the breaker's longest back-off
            outside = [t for t in outside if not soak.events["dead_from"] - INTERVAL
                       <= t <= soak.events["alive_again"] + 200]
        assert not outside, (name, outside, f)
    assert f["objects_landed"] > 0
    assert f["registry"].get("SUCCESS") == f["objects_landed"], (f["registry"], drain)
    assert f["rows_in_parquet"] == f["rows_landed"], f
    assert f["duplicate_rows"] == 0, f
    assert f["hourly_rows"] > 0, f
    assert f["hourly_rows_differing_from_raw"] == 0, f
    texts = [json.dumps(n) for n in notes]
    assert any("s3-compaction" in t and "Failed" in t for t in texts) or \
        "frozen_at" not in soak.events, texts
    assert texts, "no notification arrived"
    assert any("shopfloor.buffer.backlog" in t for t in texts), texts
    if LONG:  # the outage spans a whole capture window: that run ends Degraded, and is told
        assert any("modbus-capture" in t and "Degraded" in t for t in texts), texts
    assert not leftovers, leftovers
