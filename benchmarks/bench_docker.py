"""Docker work pool figures (issue 27), against the process worker in the same run.

    python benchmarks/bench_docker.py start [--runs 5]   # scheduled start -> first log line
    python benchmarks/bench_docker.py build              # `make image` after a one-line change

``start``: a `prefect server` (SQLite), a process pool and a Docker pool (the repo's
template), the same deployment (register-s3-keys: its engine logs "Beginning flow run"
before it loads a block, which is all this measures) on each, a worker for each polling
every second with no prefetch. Runs are scheduled 5 s ahead, alternately on each pool;
the figure is from the run's scheduled time to its first log line from the flow engine
(logger ``prefect.flow_runs``), by the server's timestamps. Needs the engine and
`make image`.

``build``: appends a comment line to a module, times `make image`, restores the file and
times it again (Docker's layer cache keys on file content, so that build is cached).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deployments.docker_pool import load_template  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.e2e.servers import BIN, clean_env, prefect_server, sh, stop  # noqa: E402
from tests.pg import throwaway_database  # noqa: E402

ENTRY = "flows/s3_compaction.py:register_s3_keys"


def _api(env: dict[str, str], method: str, path: str, **kw) -> httpx.Response:
    """A REST call; a server busy writing to SQLite may miss one, so up to 5 tries."""
    for attempt in range(5):
        try:
            r = httpx.request(method, env["PREFECT_API_URL"] + path, timeout=30, **kw)
            if r.status_code != 503:
                break
        except httpx.TimeoutException:
            if attempt == 4:
                raise
        time.sleep(3)
    r.raise_for_status()
    return r


def _first_log(env: dict[str, str], run_id: str, timeout: float = 300) -> datetime:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = _api(env, "POST", "/logs/filter", json={
            "logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC",
            "limit": 50}).json()
        engine = [x for x in logs if x["name"] == "prefect.flow_runs"]
        if engine:
            return datetime.fromisoformat(engine[0]["timestamp"])
        time.sleep(1)
    raise TimeoutError(f"no log line of run {run_id} in {timeout} s")


def _deploy(env: dict[str, str], tmp: Path, pool: str, job_variables: dict) -> str:
    path = tmp / f"{pool}.yaml"
    pull = ([{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]
            if "image" not in job_variables else
            [{"prefect.deployments.steps.set_working_directory":
              {"directory": "/opt/shopfloor"}}])
    path.write_text(json.dumps({
        "name": "shopfloor", "prefect-version": "3.8.8", "pull": pull,
        "deployments": [{"name": pool, "entrypoint": ENTRY,
                         "work_pool": {"name": pool, "job_variables": job_variables}}]}))
    sh(env, str(BIN / "prefect"), "--no-prompt", "deploy", "--all", "--prefect-file",
       str(path))
    return _api(env, "GET", f"/deployments/name/register-s3-keys/{pool}").json()["id"]


def start(runs: int) -> None:
    tag = uuid.uuid4().hex[:6]
    env = clean_env()
    env["PREFECT_WORKER_QUERY_SECONDS"] = "1"
    procs: list[subprocess.Popen] = []
    pg = os.environ.get("SHOPFLOOR_TEST_PG_URL",
                        "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    with throwaway_database(pg, "bench_docker") as db, tempfile.TemporaryDirectory() as d:
        # PostgreSQL: a SQLite server answers 503s on a busy machine.
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = make_url(db).set(
            drivername="postgresql+asyncpg").render_as_string(hide_password=False)
        _measure(env, Path(d), procs, tag, runs)


def _measure(env: dict[str, str], tmp: Path, procs: list[subprocess.Popen], tag: str,
             runs: int) -> None:
    with prefect_server(tmp, env, free_port()):
        pools = {"process": f"bench-process-{tag}", "docker": f"bench-docker-{tag}"}
        sh(env, str(BIN / "prefect"), "work-pool", "create", pools["process"], "--type",
           "process")
        (tmp / "t.json").write_text(json.dumps(load_template(env["PREFECT_API_URL"])))
        sh(env, str(BIN / "prefect"), "work-pool", "create", pools["docker"], "--type",
           "docker", "--base-job-template", str(tmp / "t.json"))
        deps = {"process": _deploy(env, tmp, pools["process"], {}),
                "docker": _deploy(env, tmp, pools["docker"], {"image": "shopfloor:latest"})}
        for kind, pool in pools.items():
            args = [str(BIN / "prefect"), "worker", "start", "--pool", pool,
                    "--prefetch-seconds", "0"] + (["--type", "docker"] if kind == "docker"
                                                  else [])
            procs.append(subprocess.Popen(args, env=env, cwd=ROOT,
                                          stdout=open(tmp / f"{kind}.log", "w"),
                                          stderr=subprocess.STDOUT, start_new_session=True))
        time.sleep(10)
        took: dict[str, list[float]] = {"process": [], "docker": []}
        try:
            for i in range(runs * 2):
                kind = ("process", "docker")[i % 2]
                at = datetime.now(UTC) + timedelta(seconds=5)
                run = _api(env, "POST", f"/deployments/{deps[kind]}/create_flow_run", json={
                    "state": {"type": "SCHEDULED", "state_details": {
                        "scheduled_time": at.isoformat()}}}).json()
                first = _first_log(env, run["id"])
                took[kind].append((first - at).total_seconds())
                print(f"{kind:8s} run {i // 2 + 1}: {took[kind][-1]:.1f} s", flush=True)
                time.sleep(15)  # the run's container or process ends before the next
        finally:
            for p in procs:
                stop(p, 2, timeout=60)
            subprocess.run(["docker", "rm", "-f", *subprocess.run(
                ["docker", "ps", "-aq", "--filter",
                 f"label=io.prefect.work-pool-name={pools['docker']}"],
                capture_output=True, text=True).stdout.split()], capture_output=True)
    med = {k: statistics.median(v) for k, v in took.items()}
    print(f"median: process {med['process']:.1f} s, docker {med['docker']:.1f} s, "
          f"docker/process {med['docker'] / med['process']:.2f}x")


def build() -> None:
    make = os.environ.get("MAKE", "make").split()
    target = ROOT / "shopfloor" / "__init__.py"
    original = target.read_bytes()
    times = []
    try:
        target.write_bytes(original + b"# bench_docker: a one-line change\n")
        t = time.monotonic()
        subprocess.run([*make, "image"], cwd=ROOT, check=True, capture_output=True)
        times.append(time.monotonic() - t)
    finally:
        target.write_bytes(original)
    t = time.monotonic()
    subprocess.run([*make, "image"], cwd=ROOT, check=True, capture_output=True)
    times.append(time.monotonic() - t)
    print(f"make image after a one-line change: {times[0]:.0f} s; "
          f"after restoring it (cached layers): {times[1]:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["start", "build"])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    start(args.runs) if args.what == "start" else build()


if __name__ == "__main__":
    main()
