"""Start the plant dashboard: check its blocks and databases, then ``streamlit run`` the page."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from shopfloor.aggregation.hours import resolve_timezone
from shopfloor.db.engine import check_connection
from tasks import runtime

APP = Path(__file__).with_name("dashboard_app.py")


def streamlit_command(port: int, address: str, warehouse_db: str, metadata_db: str,
                      timezone: str) -> list[str]:
    """The ``streamlit run`` command line serving the dashboard page with these settings."""
    return [sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.port", str(port), "--server.address", address,
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "viewer",
            "--", "--warehouse-db", warehouse_db, "--metadata-db", metadata_db,
            "--timezone", timezone]


def check_dashboard(warehouse_db: str, metadata_db: str, timezone: str) -> None:
    """Refuse to start (one :class:`ShopfloorError` line) on an unknown zone or block or a
    database that does not answer, before anything is served."""
    resolve_timezone(timezone)
    for name in dict.fromkeys((warehouse_db, metadata_db)):
        check_connection(runtime.engine(name), name)


def ephemeral_api() -> dict[str, str]:
    """``PREFECT_API_URL`` of the temporary Prefect server this process started to read the
    blocks (ephemeral mode), so Streamlit reads them there instead of starting a second
    one; it lives while this process waits on Streamlit. Empty when a server is configured.
    """
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return {}
    server = SubprocessASGIServer()  # the instance the client started, if it did
    return {"PREFECT_API_URL": server.api_url} if server.running else {}


def run_dashboard(port: int, address: str, warehouse_db: str, metadata_db: str,
                  timezone: str) -> int:
    """Serve the dashboard until interrupted; returns Streamlit's exit code."""
    check_dashboard(warehouse_db, metadata_db, timezone)
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", **ephemeral_api()}
    proc = subprocess.Popen(streamlit_command(port, address, warehouse_db, metadata_db,
                                              timezone), env=env)

    def forward(signum: int, _frame: object) -> None:  # a supervisor stops us, not Streamlit
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        return proc.wait()
    except KeyboardInterrupt:  # from a terminal Streamlit got it too; from kill -INT it did not
        forward(signal.SIGINT, None)
        return proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
