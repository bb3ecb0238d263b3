"""A process that imports the flows once, then forks one child per run (tests/crash).

Starting Python, Prefect and DuckDB costs seconds a process; a fork of this process
costs milliseconds, so hundreds of crash schedules fit in minutes. The zygote itself
never runs a flow (no thread, no connection, no event loop is inherited by a child).
Protocol, one JSON object a line on stdin/stdout:

- ``{"op": "run", "target": "module:function", "kwargs": {...}, "env": {...}}``
  -> ``{"pid": N}``: the child sets ``env``, calls the target and exits 0, or 1 when
  it raised (its traceback goes to stderr); a ``kill -9`` ends it where it is.
- ``{"op": "wait", "pid": N, "timeout": S}`` -> ``{"status": ..., "signal": ...}``
"""

import importlib
import json
import os
import signal
import sys
import time
import traceback


def _child(req: dict) -> None:
    os.dup2(2, 1)  # the child's prints must not reach the protocol on stdout
    code = 0
    try:
        os.environ.update(req.get("env", {}))
        module, name = req["target"].split(":")
        getattr(importlib.import_module(module), name)(**req.get("kwargs", {}))
    except BaseException:  # noqa: BLE001 - a run that raised is an outcome, not an error
        traceback.print_exc()
        code = 1
    finally:
        sys.stderr.flush()
        os._exit(code)


def _wait(pid: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            return {"status": None, "signal": None, "timed_out": True}
        time.sleep(0.02)
    if os.WIFSIGNALED(status):
        return {"status": None, "signal": os.WTERMSIG(status), "timed_out": False}
    return {"status": os.WEXITSTATUS(status), "signal": None, "timed_out": False}


def main() -> None:
    for module in sys.argv[1:]:
        importlib.import_module(module)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "run":
            pid = os.fork()
            if pid == 0:
                _child(req)
            reply = {"pid": pid}
        else:
            reply = _wait(req["pid"], req["timeout"])
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
