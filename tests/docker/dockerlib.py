"""What the Docker tests share: the `docker` CLI, waiting for flow runs, and the clean-up
that leaves no container of a test's pool behind."""

import subprocess
import time

import httpx

IMAGE = "shopfloor:latest"
# Where SHOPFLOOR_HOME is inside the image (Dockerfile).
CONTAINER_HOME = "/opt/shopfloor/.shopfloor"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check,
                          timeout=timeout)


def engine_skip_reason() -> str | None:
    """Why the Docker tests cannot run here, or None when they can."""
    try:
        if docker("info", check=False, timeout=30).returncode != 0:
            return "no Docker engine (start dockerd, or run `make docker-ci`)"
    except FileNotFoundError:
        return "no docker CLI (install docker.io, or run `make docker-ci`)"
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        return f"no image {IMAGE}: run `make image` first"
    return None


def flow_run(api_url: str, run_id: str) -> dict | None:
    """The flow run, or None when the server did not answer this time (a server busy
    writing logs to SQLite may miss one poll; that is not the run's failure)."""
    try:
        r = httpx.get(f"{api_url}/flow_runs/{run_id}", timeout=30)
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None


def wait_terminal(api_url: str, run_id: str, timeout: float) -> dict:
    """The flow run once it has ended."""
    deadline, state = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        run = flow_run(api_url, run_id)
        if run is not None:
            state = run["state_type"]
            if state in TERMINAL:
                return run
        time.sleep(2)
    raise AssertionError(f"flow run {run_id} not finished in {timeout} s: {state}")


def wait_state(api_url: str, run_id: str, states: set[str], timeout: float) -> dict:
    """The flow run once its state type is one of ``states``."""
    deadline, state = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        run = flow_run(api_url, run_id)
        if run is not None:
            state = run["state_type"]
            if state in states:
                return run
        time.sleep(1)
    raise AssertionError(f"flow run {run_id} not in {states} in {timeout} s: {state}")


def containers(label: str, value: str, running_only: bool = False) -> list[str]:
    """Ids of the containers labelled ``label=value`` (stopped ones too by default)."""
    args = ["ps", "-q", "--filter", f"label={label}={value}"]
    if not running_only:
        args.insert(1, "-a")
    return docker(*args).stdout.split()


def wait_no_containers(label: str, value: str, timeout: float) -> list[str]:
    """Waits until no container labelled ``label=value`` exists; the ones left after
    ``timeout`` (a run is Completed in Prefect a moment before its container exits and
    is removed)."""
    deadline = time.monotonic() + timeout
    while True:
        left = containers(label, value)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(1)


def remove_pool_containers(pool: str) -> list[str]:
    """Force-removes every container of work pool ``pool``; the ids it removed. A test's
    last step, so that a failing test leaves nothing behind either (a stopped worker does
    not stop its runs' containers)."""
    left = containers("io.prefect.work-pool-name", pool)
    for cid in left:
        docker("rm", "-f", cid, check=False)
    return left
