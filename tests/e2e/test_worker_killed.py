"""A worker killed with ``kill -9`` during a warehouse outage, then the next run: nothing
lost, nothing twice (issue 24, docs/store_and_forward.md).

Real processes only: a `prefect server`, the capture deployment of prefect.yaml deployed
to a process pool (its parameters overridden for a short run), `shopfloor worker` in its
own process group, `shopfloor simulate modbus` with two PLCs, JSON landing to the local
folder and the warehouse on a private PostgreSQL cluster. Once the run has stored some
slots the warehouse is stopped (``pg_ctl stop -m immediate``); a few slots later, held
only in the collector's buffer, the worker's whole process group (the flow-run process
with it) gets SIGKILL. The warehouse and a new worker come back and the next run must
forward what the killed run buffered: every (device, capture time) once in
``temperature_raw`` and once in the landing.

Whatever happened, everything is stopped at the end: the workers and the simulator by
process group, then the server, then any process left with the test's marker in its
environment, then the cluster (``pg_ctl stop -m immediate``).
"""

import json
import os
import signal
import sqlite3
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text

from deployments.deploy import load_config, plan_deploy
from deployments.operations import apply_overrides, automation_models, load_operations
from deployments.worker import descendants
from shopfloor.modbus.simulator import free_port_run
from tests.conftest import free_port
from tests.e2e.servers import BIN, ROOT, api, clean_env, marked_pids, prefect_server, sh
from tests.pgcluster import PrivateCluster, private_cluster

pytestmark = pytest.mark.timeout(400)

DEVICES = {"killed-1": "KILL1", "killed-2": "KILL2"}  # block name: loc_id
INTERVAL = 1.0
KILLED_RUN_SAMPLES = 600  # far more than the run lives to take
NEXT_RUN_SAMPLES = 3
STORED_BEFORE_OUTAGE = 3  # slots per device in the warehouse before it is stopped
BUFFERED_IN_OUTAGE = 4  # slots per device only in the buffer when the worker is killed
CAPTURE = "modbus_capture/every-hour"
POOL = "shopfloor-process"  # shopfloor deploy --local's
ZOMBIES = "shopfloor-zombie-runs"
# The deployment's flow runs beat every 30 s (Prefect's shortest); the automation marks a
# run Crashed when no beat follows within this (120 s in operations.yaml).
ZOMBIE_WITHOUT_BEAT_SECONDS = 35
DONE = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def wait_for(check: Callable[[], bool], timeout: float, what: str,
             logs: Callable[[], str] = lambda: "") -> None:
    """Poll ``check`` until true; fail naming ``what`` (and the logs) after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{logs()}")
        time.sleep(0.2)




def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as dead)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@dataclass
class Plant:
    """The running system: its environment, folders and processes."""

    env: dict[str, str]
    home: Path
    warehouse: PrivateCluster
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def shopfloor_home(self) -> Path:
        return Path(self.env["SHOPFLOOR_HOME"])

    def spawn(self, name: str, *args: str) -> subprocess.Popen:
        """``args`` in its own process group (session), output to ``<name>.log``."""
        with open(self.home / f"{name}.log", "a") as log:
            proc = subprocess.Popen(list(args), env=self.env, cwd=ROOT, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def logs(self, *names: str) -> str:
        return "\n".join(f"--- {n}.log\n" + (self.home / f"{n}.log").read_text()[-3000:]
                         for n in names if (self.home / f"{n}.log").exists())

    def kill_group(self, proc: subprocess.Popen) -> list[int]:
        """SIGKILL ``proc``'s whole process group and anything below it; the pids killed."""
        below = descendants(proc.pid)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _kill(below)  # a child that left the group goes too
        proc.wait(timeout=30)
        return below


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[Plant]:
    """A Prefect server, the warehouse cluster and the environment pointing at them; every
    process started under it is killed at the end."""
    marker = f"sf-killed-{uuid.uuid4().hex}"
    env = clean_env()
    with ExitStack() as stack:
        cluster = stack.enter_context(private_cluster())
        env.update({
            "SHOPFLOOR_E2E_MARKER": marker, "PREFECT_LOGGING_LEVEL": "INFO",
            "SHOPFLOOR_HOME": str(tmp_path / "shopfloor"), "SHOPFLOOR_DB_URL": cluster.url,
            # A worker asks for runs every second, not every 10 s: the test waits less.
            "PREFECT_WORKER_QUERY_SECONDS": "1",
        })
        p = Plant(env, tmp_path, cluster)

        def stop_procs() -> None:
            for proc in p.procs:
                if proc.poll() is None:
                    p.kill_group(proc)

        # Last: whatever left its group (a flow-run process), after the server stopped.
        stack.callback(lambda: _kill(marked_pids(marker)))
        stack.enter_context(prefect_server(tmp_path, env, free_port()))
        stack.callback(stop_procs)  # first: workers and the simulator, then the server
        yield p


def _simulate(plant: Plant) -> tuple[int, Callable[[], None]]:
    """Two simulated PLCs on consecutive ports: the first port, and a wait until they
    serve."""
    port = free_port_run(len(DEVICES))
    proc = plant.spawn("simulator", str(BIN / "shopfloor"), "simulate", "modbus", "--port",
                       str(port), "--devices", str(len(DEVICES)))

    def serving() -> None:
        wait_for(lambda: "serving" in plant.logs("simulator") or proc.poll() is not None,
                 60, "the simulator", lambda: plant.logs("simulator"))
        assert proc.poll() is None, plant.logs("simulator")

    return port, serving


def _all(env: dict[str, str], *commands: list[str]) -> None:
    """Run ``commands`` at once (each takes seconds of imports); fail with the output of
    one that failed."""
    procs = [subprocess.Popen(c, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for c in commands]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for cmd, p, out in zip(commands, procs, outs, strict=True):
        assert p.returncode == 0, f"{cmd} failed ({p.returncode}):\n{out}"


def _deploy_capture(plant: Plant) -> str:
    """prefect.yaml's capture deployment alone, derived as ``shopfloor deploy --local``
    derives it, with a short run's parameters and no schedule; its id."""
    override = {"deployments": {CAPTURE: {
        "schedules": [],
        "parameters": {"devices": list(DEVICES), "span_seconds": None,
                       "samples": KILLED_RUN_SAMPLES, "interval_seconds": INTERVAL,
                       "land_json": True}}}}
    plan = plan_deploy(load_config(ROOT), "local", None, ROOT, override=override)
    plan.config["deployments"] = [d for d in plan.config["deployments"]
                                  if d["entrypoint"].endswith(":modbus_capture")
                                  and d["name"] == "every-hour"]
    derived = plant.home / "prefect.yaml"
    derived.write_text(yaml.safe_dump(plan.config, sort_keys=False))
    assert (plan.pool, plan.pool_type) == (POOL, "process")
    sh(plant.env, str(BIN / "prefect"), "--no-prompt", "deploy", "--all", "--prefect-file",
       str(derived))
    return api(plant.env, "GET", "/deployments/name/modbus-capture/every-hour").json()["id"]


def _watch_zombies(plant: Plant) -> None:
    """operations.yaml's automation that marks a run Crashed when its heartbeats stop,
    alone and with a shorter window (its other automations would restart the run)."""
    ops = apply_overrides(load_operations(ROOT), {
        "automations": {ZOMBIES: {"within": ZOMBIE_WITHOUT_BEAT_SECONDS}}})
    ops["automations"] = [a for a in ops["automations"] if a["name"] == ZOMBIES]
    (model,) = automation_models(ops, [])
    api(plant.env, "POST", "/automations/", json=model.model_dump(mode="json"))


def _run(plant: Plant, deployment_id: str, **parameters: object) -> str:
    return api(plant.env, "POST", f"/deployments/{deployment_id}/create_flow_run",
               json={"parameters": parameters}).json()["id"]


def _state(plant: Plant, run_id: str) -> dict:
    run = api(plant.env, "GET", f"/flow_runs/{run_id}").json()
    return run["state"] or {}


def _warehouse(url: str) -> Counter:
    """(device, capture ms) -> rows in temperature_raw."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT device, capture_dt FROM temperature_raw")).all()
    finally:
        engine.dispose()
    return Counter((d, round(t.replace(tzinfo=t.tzinfo or UTC).timestamp() * 1000))
                   for d, t in rows)


def _stored(url: str) -> Counter:
    """Like :func:`_warehouse`, empty while the server is down."""
    try:
        return _warehouse(url)
    except Exception:  # noqa: BLE001 - not reachable yet
        return Counter()


def _landed(folder: Path) -> Counter:
    """(device, heartbeat ms) -> landed JSON lines."""
    lines = [json.loads(ln) for p in sorted(folder.rglob("*.json"))
             for ln in p.read_text().splitlines() if ln.strip()]
    return Counter((ln["device"], ln["heartbeat"]) for ln in lines)


def _buffered(home: Path, run: str | None = None) -> set[tuple[str, int]]:
    """(device, capture ms) of the samples in the collector's buffer (of ``run`` only)."""
    path = home / "buffer" / "default.sqlite3"
    if not path.exists():
        return set()
    query = ("SELECT d.name, s.capture_ms FROM sample s JOIN device d ON d.id = s.device "
             "JOIN run r ON r.id = s.run WHERE ? IS NULL OR r.name = ?")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
            return set(db.execute(query, (run, run)).fetchall())
    except sqlite3.OperationalError:  # tables not created yet
        return set()


def _per_device(keys: set[tuple[str, int]] | Counter, since_ms: int = 0) -> dict[str, int]:
    return {d: sum(1 for k, t in keys if k == d and t >= since_ms) for d in DEVICES}


def test_a_worker_killed_during_a_warehouse_outage_loses_and_duplicates_nothing(plant):
    env, shopfloor, url = plant.env, str(BIN / "shopfloor"), plant.warehouse.url
    logs = lambda: plant.logs("worker-1", "worker-2", "simulator")  # noqa: E731
    t0, marks = time.monotonic(), []
    mark = lambda what: marks.append(f"{what} +{time.monotonic() - t0:.0f}s")  # noqa: E731
    port, serving = _simulate(plant)
    sh(env, str(BIN / "prefect"), "work-pool", "create", POOL, "--type", "process")
    # The worker starts, and the deployment is made, while the blocks and tables are.
    worker = plant.spawn("worker-1", shopfloor, "worker", "--pool", POOL)
    with ThreadPoolExecutor(1) as pool:
        deploying = pool.submit(_deploy_capture, plant)
        _all(env, [shopfloor, "blocks", "bootstrap"], [shopfloor, "db", "init", "--url", url],
             *[[shopfloor, "modbus", "add-device", name, "--map",
                str(ROOT / "maps" / "simulator.yaml"), "--loc-id", loc, "--host",
                "127.0.0.1", "--port", str(port + i), "--district", "D01"]
               for i, (name, loc) in enumerate(DEVICES.items())])
        deployment = deploying.result(timeout=300)
    _watch_zombies(plant)
    serving()
    mark("deployed")
    landing = plant.shopfloor_home / "raw-logs"

    # The run stores a few slots, then the warehouse goes away mid-run.
    killed_run = _run(plant, deployment)
    wait_for(lambda: min(_per_device(_stored(url)).values()) >= STORED_BEFORE_OUTAGE, 90,
             "the first rows in the warehouse", logs)
    mark("warehouse stopped")
    plant.warehouse.stop("immediate")
    outage_ms = round(time.time() * 1000)
    # Slots taken since: only in the buffer. Then the worker, its flow-run process with
    # it, is killed as the OOM killer or a power switch would.
    wait_for(lambda: min(_per_device(_buffered(plant.shopfloor_home, killed_run),
                                     outage_ms).values()) >= BUFFERED_IN_OUTAGE,
             30, "slots buffered during the outage", logs)
    assert _state(plant, killed_run)["type"] == "RUNNING"
    below = plant.kill_group(worker)
    killed_at = time.monotonic()
    mark("worker killed")
    assert below, "the worker had no flow-run process"
    wait_for(lambda: not [p for p in below if _alive(p)], 10, "the flow-run process to die")
    # Nobody is left to report the run's end: Prefect still shows it Running.
    assert _state(plant, killed_run)["type"] == "RUNNING"
    buffered = _buffered(plant.shopfloor_home, killed_run)

    plant.warehouse.start()
    before = _warehouse(url)  # what was forwarded before the outage
    landed_before = _landed(landing)
    killed = buffered | set(before)  # every slot the killed run captured
    assert min(_per_device(killed, outage_ms).values()) >= BUFFERED_IN_OUTAGE
    assert not set(before) & {k for k in buffered if k[1] >= outage_ms + 1000}

    # The next run, on a new worker, forwards the killed run's backlog with its own.
    plant.spawn("worker-2", shopfloor, "worker", "--pool", POOL)
    next_run = _run(plant, deployment, samples=NEXT_RUN_SAMPLES)
    wait_for(lambda: _state(plant, next_run).get("type") in DONE, 120, "the next run", logs)
    state = _state(plant, next_run)
    mark("next run ended")
    # Its heartbeats stopped: the zombie automation marks it Crashed.
    wait_for(lambda: _state(plant, killed_run).get("type") != "RUNNING", 90,
             "the killed run to be marked", logs)
    killed_state = _state(plant, killed_run)
    mark(f"killed run {killed_state.get('name')}")
    print(f"\nkilled run: {len(killed)} slots captured, {len(set(before))} stored and "
          f"{sum(landed_before.values())} landed before the kill, {len(buffered)} buffered; "
          f"{killed_state.get('name')} {time.monotonic() - killed_at:.0f} s after the kill: "
          f"{killed_state.get('message')!r}; next run: {state.get('name')}: "
          f"{state.get('message')!r}; " + ", ".join(marks))
    assert state["type"] == "COMPLETED" and state["name"] == "Completed", (state, logs())
    assert "backlog" not in (state.get("message") or ""), state
    assert killed_state["type"] == "CRASHED", killed_state
    # The next run said what it found to forward (what only the buffer held).
    owed_warehouse = len(killed - set(before))
    owed_landing = len(killed - set(landed_before))
    assert (f"backlog at start {owed_warehouse} for warehouse:shopfloor-warehouse-db, "
            f"{owed_landing} for landing:shopfloor-raw-logs") in (
        plant.home / "worker-2.log").read_text(), plant.logs("worker-2")

    stored, landed = _warehouse(url), _landed(landing)
    assert killed <= set(stored), sorted(killed - set(stored))[:10]
    assert killed <= set(landed), sorted(killed - set(landed))[:10]
    assert set(stored.values()) == {1}, [k for k, n in stored.items() if n > 1][:10]
    assert set(landed.values()) == {1}, [k for k, n in landed.items() if n > 1][:10]
    assert set(landed) == set(stored)  # the same readings in both sinks
    for device, n in _per_device(killed).items():
        assert _per_device(stored)[device] == n + NEXT_RUN_SAMPLES, (device, n, stored)
    assert not _buffered(plant.shopfloor_home)  # every sample forwarded to both sinks
