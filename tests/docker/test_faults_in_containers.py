"""Faults of the Docker work pool, on a real `prefect server`, the pool from
deployments/docker-pool.json, `shopfloor deploy` of prefect.yaml onto it, and the Docker
worker under its supervisor (`python -m deployments.docker_worker`, docs/docker.md):

- the worker killed with ``kill -9`` during a capture run: the supervisor stops the run's
  container (no container runs on unmanaged), the run ends Crashed, operations.yaml's
  restart automation starts capture again, and a new worker runs it;
- a container over its memory limit (job variable ``mem_limit``): the run ends Crashed
  and its state message says it ran out of memory;
- a missing image: the run ends Crashed with one line naming the image.

No container of the test's pool is left at the end.
"""

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from deployments.docker_pool import load_template
from deployments.worker import children
from shopfloor.modbus.simulator import free_port_run
from tests.conftest import free_port
from tests.docker.dockerlib import (
    CONTAINER_HOME,
    IMAGE,
    containers,
    docker,
    remove_pool_containers,
    wait_no_containers,
    wait_state,
    wait_terminal,
)
from tests.e2e.servers import BIN, ROOT, api, clean_env, prefect_server, sh, stop
from tests.pg import throwaway_database
from tests.prefect_harness import asyncpg_url

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

DEVICE = ("dock-fault", "DOCKF", "D01")
RUN_LABEL = "io.prefect.flow-run-id"


@dataclass
class Stack:
    env: dict[str, str]
    home: Path
    logs: Path
    pool: str
    procs: list[subprocess.Popen] = field(default_factory=list)

    def supervisor(self, name: str) -> subprocess.Popen:
        """The Docker worker under its supervisor, as a plant runs it."""
        proc = subprocess.Popen(
            [str(BIN / "python"), "-m", "deployments.docker_worker", "--pool", self.pool,
             "--name", name, "--grace-seconds", "20"],
            env=self.env, cwd=ROOT, stdout=open(self.logs / f"{name}.log", "a"),
            stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def run(self, deployment: str, **body: object) -> dict:
        flow, name = deployment.split("/")
        dep = api(self.env, "GET", f"/deployments/name/{flow}/{name}").json()
        return api(self.env, "POST", f"/deployments/{dep['id']}/create_flow_run",
                   json=body).json()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, pg_server_url: str) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("docker-faults")
    home = tmp / "container-home"
    home.mkdir()
    home.chmod(0o777)  # written by the image's user (uid 10001)
    pool = f"shopfloor-docker-{uuid.uuid4().hex[:8]}"
    with throwaway_database(pg_server_url, "docker_faults") as db, \
            throwaway_database(pg_server_url, "docker_faults_prefect") as prefect_db:
        env = clean_env()
        env.update({"PREFECT_LOGGING_LEVEL": "INFO", "SHOPFLOOR_DB_URL": db,
                    "SHOPFLOOR_HOME": str(tmp / "host-home"),
                    "PREFECT_API_DATABASE_CONNECTION_URL": asyncpg_url(prefect_db)})
        s = Stack(env, home, tmp, pool)
        try:
            with prefect_server(tmp, env, free_port()):
                _set_up(s)
                yield s
                for p in s.procs:  # supervisors: SIGINT; the simulator: SIGTERM
                    stop(p, signal.SIGINT if "docker_worker" in str(p.args) else
                         signal.SIGTERM, timeout=90)
                left = wait_no_containers("io.prefect.work-pool-name", pool, timeout=60)
                assert not left, f"containers left: {left}"
        finally:
            for p in s.procs:
                stop(p, signal.SIGKILL, timeout=10)
            remove_pool_containers(pool)


def _set_up(s: Stack) -> None:
    template = s.logs / "pool.json"
    template.write_text(json.dumps(load_template(s.env["PREFECT_API_URL"])))
    sh(s.env, str(BIN / "prefect"), "work-pool", "create", s.pool, "--type", "docker",
       "--base-job-template", str(template))
    res = docker("run", "--rm", "--network", "host", "--label",
                 f"io.prefect.work-pool-name={s.pool}", "-v", f"{s.home}:{CONTAINER_HOME}",
                 "-e", f"PREFECT_API_URL={s.env['PREFECT_API_URL']}",
                 "-e", f"SHOPFLOOR_DB_URL={s.env['SHOPFLOOR_DB_URL']}", IMAGE, "sh", "-c",
                 "shopfloor blocks bootstrap && shopfloor db init", check=False, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    port = free_port_run(1)
    log = s.logs / "simulator.log"
    sim = subprocess.Popen([str(BIN / "shopfloor"), "simulate", "modbus", "--port", str(port)],
                           env=s.env, cwd=ROOT, stdout=open(log, "w"),
                           stderr=subprocess.STDOUT, start_new_session=True)
    s.procs.append(sim)
    deadline = time.monotonic() + 60
    while "serving" not in log.read_text():
        assert sim.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    name, loc, district = DEVICE
    sh(s.env, str(BIN / "shopfloor"), "modbus", "add-device", name, "--map",
       str(ROOT / "maps" / "simulator.yaml"), "--loc-id", loc, "--host", "127.0.0.1",
       "--port", str(port), "--dstrct-code", district)
    # Capture's defaults are what the restart automation runs again: this device, a
    # window long enough to be running when the worker is killed.
    override = s.logs / "override.yaml"
    override.write_text(yaml.safe_dump({"deployments": {"modbus_capture/every-hour": {
        "parameters": {"devices": [name], "span_seconds": 600}}}}))
    sh(s.env, str(BIN / "shopfloor"), "deploy", "--no-build", "--image", IMAGE, "--pool",
       s.pool, "--paused", "--override", str(override))
    for dep in api(s.env, "POST", "/deployments/filter", json={}).json():
        jv = {**(dep.get("job_variables") or {}), "volumes": [f"{s.home}:{CONTAINER_HOME}"]}
        api(s.env, "PATCH", f"/deployments/{dep['id']}", json={"job_variables": jv})


@pytest.fixture
def worker(stack: Stack) -> Iterator[subprocess.Popen]:
    proc = stack.supervisor(f"faults-{uuid.uuid4().hex[:6]}")
    yield proc
    stop(proc, signal.SIGINT, timeout=90)


def test_a_missing_image_crashes_the_run_with_one_clear_line(stack: Stack, worker) -> None:
    run = stack.run("demo/embedded", job_variables={"image": "shopfloor:no-such-tag"})
    done = wait_terminal(stack.env["PREFECT_API_URL"], run["id"], timeout=180)
    assert done["state_type"] == "CRASHED", done["state"]
    # The supervisor's line replaces the Docker API's error once the worker's is in.
    message = _message_once(stack, run["id"], "Image ", timeout=90)
    assert message.startswith("Image shopfloor:no-such-tag is not on this Docker host"), \
        message
    assert "\n" not in message, message
    assert not containers(RUN_LABEL, run["id"])


def _message_once(stack: Stack, run_id: str, start: str, timeout: float) -> str:
    """The run's state message once it starts with ``start`` (or the last one seen)."""
    deadline = time.monotonic() + timeout
    message = ""
    while time.monotonic() < deadline:
        message = api(stack.env, "GET", f"/flow_runs/{run_id}").json()["state"]["message"] \
            or ""
        if message.startswith(start):
            break
        time.sleep(2)
    return message


def test_a_container_over_its_memory_limit_crashes_saying_so(stack: Stack, worker) -> None:
    # 64 MiB: the flow's Python is killed while importing Prefect, before any task.
    run = stack.run("demo/embedded", job_variables={"mem_limit": "64m",
                                                    "memswap_limit": "64m"})
    done = wait_terminal(stack.env["PREFECT_API_URL"], run["id"], timeout=240)
    assert done["state_type"] == "CRASHED", done["state"]
    # The supervisor's word comes once the worker's own Crashed state is in.
    message = _message_once(stack, run["id"], "Out of memory", timeout=90)
    assert "Out of memory" in message and "64 MiB" in message and "mem_limit" in message, \
        message
    assert not wait_no_containers(RUN_LABEL, run["id"], timeout=60)


def test_a_killed_worker_crashes_its_run_which_runs_again(stack: Stack) -> None:
    api_url = stack.env["PREFECT_API_URL"]
    first = stack.supervisor(f"killed-{uuid.uuid4().hex[:6]}")
    run = stack.run("modbus-capture/every-hour")
    wait_state(api_url, run["id"], {"RUNNING"}, timeout=240)
    assert containers(RUN_LABEL, run["id"], running_only=True)
    workers = [p for p in children(first.pid)
               if b"worker" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(workers) == 1, workers
    started = time.time()
    subprocess.run(["kill", "-9", str(workers[0])], check=True)
    # The supervisor stops the container: the run is Crashed and nothing of it runs on.
    crashed = wait_terminal(api_url, run["id"], timeout=120)
    assert crashed["state_type"] == "CRASHED", crashed["state"]
    assert first.wait(timeout=120) != 0  # for the service manager to restart it
    assert not wait_no_containers(RUN_LABEL, run["id"], timeout=60)
    # operations.yaml's shopfloor-capture-restart starts capture again; a new worker
    # (what the service manager starts) runs it.
    dep_id = run["deployment_id"]
    deadline = time.monotonic() + 120
    again: list[dict] = []
    while not again and time.monotonic() < deadline:
        again = [r for r in api(stack.env, "POST", "/flow_runs/filter", json={
            "deployments": {"id": {"any_": [dep_id]}}}).json() if r["id"] != run["id"]]
        time.sleep(2)
    assert again, "no capture run was started after the crash"
    second = stack.supervisor(f"restarted-{uuid.uuid4().hex[:6]}")
    rerun = wait_state(api_url, again[0]["id"], {"RUNNING", "COMPLETED"}, timeout=240)
    print(f"\nworker killed -> rerun {rerun['state_type']} after {time.time() - started:.0f} s")
    # Stopping the supervisor stops its run's container too.
    stop(second, signal.SIGINT, timeout=120)
    assert wait_terminal(api_url, again[0]["id"], timeout=60)["state_type"] in (
        "CRASHED", "COMPLETED")
    assert not wait_no_containers("io.prefect.work-pool-name", stack.pool, timeout=60)
