"""``shopfloor docker-worker``: Prefect's Docker worker, with its containers kept managed.

A bare ``prefect worker start --type docker`` that dies (``kill -9``, an OOM kill of the
worker, a crash) leaves the containers of its runs running with nobody watching them: a
cancel from the UI reaches no one, and a capture run keeps polling the PLCs beside the
one a new worker starts. And a container killed for going over its memory limit ends
Crashed with only "exited with non-zero status code 137".

This supervisor runs the same worker as its child, named, and:

- when the worker dies without being asked to, stops the containers of that worker's
  runs (``docker stop``: SIGTERM, so the flow reports Crashed and its ``on_crashed``
  hooks run), marks any run that could not report Crashed itself, then exits with the
  worker's status for the service manager to restart it. operations.yaml's
  ``shopfloor-capture-restart`` automation starts a crashed capture again;
- when asked to stop (SIGTERM, SIGINT), stops the worker (so it starts nothing new),
  then its runs' containers the same way;
- reads the worker's output and, when a run could not be submitted because its image is
  missing (not on this host and not pullable: no registry here, or
  ``image_pull_policy: Never``), sets its Crashed state's message to one line naming the
  image, instead of the Docker API's error for a pull;
- follows the engine's ``oom`` events of the pool's containers and, once such a run has
  ended, sets its Crashed state's message to say it ran out of memory, with the limit.

If the supervisor itself is killed, the kernel kills the worker with it
(``PR_SET_PDEATHSIG``), and the containers run on, as with a bare worker.

    python -m deployments.docker_worker --pool shopfloor-docker [--name NAME] [-- worker options]
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from deployments.worker import _die_with_parent

POOL_LABEL = "io.prefect.work-pool-name"
WORKER_LABEL = "io.prefect.worker-name"
RUN_LABEL = "io.prefect.flow-run-id"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
WORKER_EXIT_SECONDS = 15.0


def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


def worker_containers(name: str) -> list[str]:
    """Ids of the running containers started by worker ``name``."""
    return _docker("ps", "-q", "--filter", f"label={WORKER_LABEL}={name}").stdout.split()


def _run_of(container: str) -> str | None:
    res = _docker("inspect", "-f", f'{{{{index .Config.Labels "{RUN_LABEL}"}}}}', container)
    return res.stdout.strip() or None if res.returncode == 0 else None


def _log(message: str) -> None:
    print(f"shopfloor docker-worker: {message}", file=sys.stderr, flush=True)


def mark_crashed(run_id: str, message: str, wait_seconds: float = 0.0) -> bool:
    """Set flow run ``run_id`` Crashed with ``message``: once it has ended (waiting up to
    ``wait_seconds`` for that, so this message is the last word), or at once when it
    has not ended by then (its process is gone and cannot report). False if it ended
    otherwise than Crashed (Completed, Failed, Cancelled: left as it is)."""
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    deadline = time.monotonic() + wait_seconds
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(uuid.UUID(run_id)).state
            done = state is not None and state.type.value in TERMINAL
            if done or time.monotonic() >= deadline:
                break
            time.sleep(1)
        if done and state.type.value != "CRASHED":
            return False
        client.set_flow_run_state(uuid.UUID(run_id), Crashed(message=message), force=True)
    return True


def stop_containers(name: str, grace_seconds: float, why: str) -> list[str]:
    """``docker stop`` the running containers of worker ``name`` (SIGTERM, then SIGKILL
    after ``grace_seconds``); runs that did not end are marked Crashed. The run ids."""
    found = {cid: _run_of(cid) for cid in worker_containers(name)}
    if not found:
        return []
    _log(f"{why}: stopping {len(found)} container(s) of its runs")
    res = _docker("stop", "-t", str(int(grace_seconds)), *found, timeout=grace_seconds + 60)
    if res.returncode != 0:
        _log(f"docker stop: {res.stderr.strip()}")
    still = [cid for cid in found if cid in worker_containers(name)]
    if still:
        _log(f"still running after docker stop: {still}; killing")
        _docker("kill", *still)
    runs = [run for run in found.values() if run]
    for run in runs:
        try:
            mark_crashed(run, f"{why}: its container was stopped by the worker's supervisor.",
                         wait_seconds=10)
        except Exception as exc:  # noqa: BLE001 - the API may be away; stop the others
            _log(f"could not mark run {run} Crashed: {exc!r}")
    return runs


# What Prefect's worker logs, by the run's name, when a submission fails.
SUBMIT_FAILED = re.compile(r"Failed to submit flow run '([^']+)' to infrastructure")


def missing_image(message: str) -> str | None:
    """The image a submission failure's message says is missing, or None."""
    if m := re.search(r"No such image: ([^\s\"')]+)", message):
        return m.group(1)
    repo, tag = re.search(r"fromImage=([^&\s:]+)", message), re.search(r"tag=([^&\s]+)", message)
    if "images/create" in message and repo:
        return f"{repo.group(1)}:{tag.group(1) if tag else 'latest'}"
    return None


def explain_submit_failure(run_name: str, pool: str) -> None:
    """Once the run named ``run_name`` on ``pool`` is Crashed for a missing image, one
    line that says so."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterName,
        WorkPoolFilter,
        WorkPoolFilterName,
    )

    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run_name])),
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])))
        if len(runs) != 1:
            return  # not found, or not one: leave the worker's message
        run_id = str(runs[0].id)
        while time.monotonic() < deadline:
            state = client.read_flow_run(uuid.UUID(run_id)).state
            if state is not None and state.type.value in TERMINAL:
                break
            time.sleep(1)
        else:
            return
    image = missing_image(state.message or "") if state.type.value == "CRASHED" else None
    if image:
        pull = "not pullable" if "images/create" in (state.message or "") else \
            "image_pull_policy Never"
        mark_crashed(run_id, f"Image {image} is not on this Docker host ({pull}): build it "
                             f"with `make image` or load it with `docker load`.")


def _relay(stream, pool: str) -> None:  # noqa: ANN001 - the worker's text stdout
    """Copies the worker's output to ours; explains runs it could not submit."""
    for line in stream:
        sys.stdout.write(line)
        sys.stdout.flush()
        if m := SUBMIT_FAILED.search(line):
            threading.Thread(target=_quietly, args=(explain_submit_failure, m.group(1), pool),
                             daemon=True).start()


def _quietly(func, *args: str) -> None:  # noqa: ANN001 - a report, never the worker's end
    try:
        func(*args)
    except Exception as exc:  # noqa: BLE001
        _log(f"{func.__name__}{args}: {exc!r}")


class OomWatcher:
    """Follows ``docker events`` for out-of-memory kills of the pool's containers and
    gives each such run's Crashed state a message that says so."""

    def __init__(self, pool: str) -> None:
        self.proc = subprocess.Popen(
            ["docker", "events", "--format", "{{json .}}", "--filter", "type=container",
             "--filter", "event=oom", "--filter", "event=die",
             "--filter", f"label={POOL_LABEL}={pool}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()

    def _follow(self) -> None:
        oom: dict[str, str] = {}  # container id -> memory limit, from its oom event on
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            cid, attrs = event.get("id", ""), (event.get("Actor") or {}).get("Attributes", {})
            action = event.get("Action") or event.get("status")
            if action == "oom":
                limit = _docker("inspect", "-f", "{{.HostConfig.Memory}}", cid).stdout.strip()
                oom[cid] = limit
            elif action == "die" and cid in oom and attrs.get(RUN_LABEL):
                threading.Thread(target=self._report, daemon=True, args=(
                    attrs[RUN_LABEL], oom.pop(cid), attrs.get("exitCode", "?"))).start()

    @staticmethod
    def _report(run_id: str, limit: str, exit_code: str) -> None:
        shown = f"{int(limit) // 2**20} MiB" if limit.isdigit() and int(limit) else "its limit"
        message = (f"Out of memory: the flow run's container went over its memory limit "
                   f"({shown}, job variable mem_limit) and was killed (exit code "
                   f"{exit_code}).")
        try:
            if mark_crashed(run_id, message, wait_seconds=60):
                _log(f"run {run_id}: {message}")
        except Exception as exc:  # noqa: BLE001 - a report, never the worker's end
            _log(f"could not report the OOM kill of run {run_id}: {exc!r}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def run_docker_worker(pool: str, name: str, extra: list[str], grace_seconds: float) -> int:
    """Run ``prefect worker start --type docker --pool pool --name name`` until it exits
    or we are told to stop; see the module docstring."""
    exe = Path(sys.executable).with_name("prefect")
    worker = subprocess.Popen(
        [str(exe), "worker", "start", "--type", "docker", "--pool", pool, "--name", name,
         *extra], preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads yet
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    threading.Thread(target=_relay, args=(worker.stdout, pool), daemon=True).start()
    watcher = OomWatcher(pool)
    asked: list[int] = []

    def _on_signal(signum: int, _frame: object) -> None:
        asked.append(signum)  # handled by the loop below: never wait inside a handler

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    while worker.poll() is None and not asked:
        time.sleep(0.5)
    try:
        if asked:
            # The worker first, so that it starts nothing new (a capture restarted by the
            # automation when its run is stopped below), then its runs' containers.
            if worker.poll() is None:
                worker.send_signal(signal.SIGINT)
                try:
                    worker.wait(timeout=WORKER_EXIT_SECONDS)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait()
            stop_containers(name, grace_seconds, f"worker {name} was stopped "
                                                 f"({signal.Signals(asked[0]).name})")
            return 0
        stop_containers(name, grace_seconds,
                        f"worker {name} died (exit status {worker.returncode})")
        return worker.returncode or 1
    finally:
        watcher.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", default="shopfloor-docker")
    parser.add_argument("--name", default=None,
                        help="worker name (default: docker-<host>-<pid>); its containers "
                             "carry it as a label")
    parser.add_argument("--grace-seconds", type=float, default=30.0,
                        help="how long a stopped container gets before SIGKILL")
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    name = args.name or f"docker-{socket.gethostname()}-{os.getpid()}"
    sys.exit(run_docker_worker(args.pool, name, extra, args.grace_seconds))


if __name__ == "__main__":
    main()
