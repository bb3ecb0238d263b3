"""Real processes for the end-to-end tests: a `prefect server`, commands, the REST API."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def stop(proc: subprocess.Popen, sig: int, timeout: float = 60) -> None:
    """Send ``sig`` and wait; kill the process group if it does not exit in time."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def clean_env() -> dict[str, str]:
    """This process's environment without any PREFECT_/SHOPFLOOR_ setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SHOPFLOOR_"))}


@contextmanager
def prefect_server(home: Path, env: dict[str, str], port: int
                   ) -> Iterator[subprocess.Popen]:
    """``prefect server start`` on 127.0.0.1:``port`` until the block ends; ``env`` gets
    PREFECT_HOME and PREFECT_API_URL."""
    env.update({"PREFECT_HOME": str(home / "prefect"),
                "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    log = open(home / "server.log", "w")
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{env['PREFECT_API_URL']}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, (home / "server.log").read_text()[-2000:]
            time.sleep(1)
        else:
            raise AssertionError("prefect server did not become healthy in 120 s")
        yield server
    finally:
        stop(server, signal.SIGTERM)
        log.close()


def sh(env: dict[str, str], *args: str, check: bool = True, timeout: float = 600):
    """Run a command in the project folder with ``env``; fail with its output."""
    res = subprocess.run(list(args), env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"{args} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


def api(env: dict[str, str], method: str, path: str, **kw) -> httpx.Response:
    """A call to the Prefect REST API of ``env``; raises on an error status (a busy
    server's 503 is retried for a while first)."""
    for _ in range(10):
        r = httpx.request(method, env["PREFECT_API_URL"] + path, timeout=30, **kw)
        if r.status_code != 503:
            break
        time.sleep(3)
    r.raise_for_status()
    return r


def marked_pids(marker: str) -> list[int]:
    """Processes whose environment carries ``marker`` (everything a test started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found
