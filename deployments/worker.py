"""``shopfloor worker``: Prefect's process worker, stopped cleanly.

A SIGINT or SIGTERM to a bare ``prefect worker start`` stops the worker and leaves its
flow processes running, orphaned. This supervisor runs the same worker as its child and,
when asked to stop, first sends SIGTERM to the worker's flow processes: Prefect turns it
into a Crashed state and runs the flows' ``on_crashed`` hooks (compaction gives its keys
back), then the worker is stopped. Whatever is still alive after the grace period is
killed, so no process is left over.

If the supervisor itself is killed (``kill -9``), the kernel kills the worker with it
(``PR_SET_PDEATHSIG``, SIGKILL: a worker that shuts down cleanly stops its flow
processes, which is what a killed worker must not do). Running flow processes finish
their runs on their own and exit, and a restarted worker picks up the next ones.
"""

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1
WORKER_EXIT_SECONDS = 15.0


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: the worker outlives a killed supervisor, as before
        pass


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name may contain spaces and parentheses: ppid follows the last ')'
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``."""
    result, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        result += kids
        todo += kids
    return result


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (alive := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


def stop_worker(worker: subprocess.Popen, grace_seconds: float) -> None:
    """Stop the flow processes (SIGTERM, their hooks run), then the worker, then leftovers."""
    flows = children(worker.pid)
    below = descendants(worker.pid)
    _signal_all(flows, signal.SIGTERM)
    _wait_gone(flows, grace_seconds)
    if worker.poll() is None:
        worker.send_signal(signal.SIGINT)
        try:
            # Its runs are gone; Prefect's worker can take a minute to wind down its loops,
            # and nothing it still holds needs that long.
            worker.wait(timeout=min(grace_seconds, WORKER_EXIT_SECONDS))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    left = [p for p in below + descendants(worker.pid) if _alive(p)]
    _signal_all(left, signal.SIGKILL)


def run_worker(pool: str, extra: list[str], grace_seconds: float = 60.0) -> int:
    """Run ``prefect worker start --pool pool`` until it exits or we are told to stop."""
    exe = Path(sys.executable).with_name("prefect")
    worker = subprocess.Popen([str(exe), "worker", "start", "--pool", pool, *extra],
                              preexec_fn=_die_with_parent)  # noqa: PLW1509 - no threads yet
    asked: list[int] = []

    def _on_signal(signum: int, _frame: object) -> None:
        asked.append(signum)  # handled by the loop below: never wait inside a handler

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    while worker.poll() is None and not asked:
        time.sleep(0.5)
    if asked:
        print(f"shopfloor worker: {signal.Signals(asked[0]).name}: stopping flow runs, then "
              "the worker", file=sys.stderr, flush=True)
        stop_worker(worker, grace_seconds)
        return 0
    return worker.returncode or 0
