"""Session fixtures for real services: PostgreSQL, MariaDB (when reachable), moto S3, Prefect.

Every test run gets its own PostgreSQL/MariaDB database with a random name, dropped at
the end. Tests are marked ``unit``/``integration``/``e2e`` by the folder they live in.
"""

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from shopfloor.db.engine import make_engine
from shopfloor.modbus.simulator import PORT_WINDOW_ENV, free_port_run, port_window_default
from tests.pg import throwaway_database

TESTS = Path(__file__).parent

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def pytest_configure(config: pytest.Config) -> None:
    """Give each xdist worker its own slice of the test ports, so that two workers
    never draw the same port for servers that are not listening yet."""
    worker_input = getattr(config, "workerinput", {})
    worker = str(worker_input.get("workerid", ""))
    workers = int(worker_input.get("workercount", 1) or 1)
    if not worker.startswith("gw") or workers < 2 or os.environ.get(PORT_WINDOW_ENV):
        return
    low, high = port_window_default()
    size = (high - low) // workers
    start = low + int(worker[2:]) * size
    os.environ[PORT_WINDOW_ENV] = f"{start}:{start + size}"


# The order files start in (``make test`` hands whole files to two workers in this order,
# `--no-loadscope-reorder`): the longest first, so that neither worker is left alone
# with a ten-minute file at the end while the other idles. xdist's own order (most tests
# first) started the soak last: its worker ran on alone for 8 of the suite's 30 minutes.
TIER_ORDER = {"e2e": 1, "crash": 2, "integration": 3, "unit": 4}


def _tier(item: pytest.Item) -> str:
    """The folder under tests/ a test lives in: unit, integration, e2e, crash, docker."""
    return Path(str(item.fspath)).relative_to(TESTS).parts[0]


def _start_rank(item: pytest.Item) -> tuple[int, int]:
    return (0 if item.get_closest_marker("long") else 1, TIER_ORDER.get(_tier(item), 5))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = _tier(item)
        if tier in TIER_ORDER:
            item.add_marker(getattr(pytest.mark, tier))
    # A stable sort on a per-file key: each file's tests stay together and in order.
    items.sort(key=_start_rank)


def free_port() -> int:
    """A free port below the ephemeral range (see ``free_port_run``), so that no
    outgoing connection takes it before the server under test listens on it."""
    return free_port_run(1)


@pytest.fixture(scope="session", autouse=True)
def shopfloor_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """This test process's own SHOPFLOOR_HOME. ``make test`` exports one folder to both
    xdist workers and keeps it from run to run, while code under test writes there when a
    test passes no home of its own: the collector's buffer (``buffer/default.sqlite3``,
    forwarded to whatever sink a later run names), the embedded SQLite database of
    ``bootstrap_blocks({})``, line-file views. Tests that need a home of their own still
    set one (the modbus tests, the CLI and e2e subprocesses)."""
    home = tmp_path_factory.mktemp("shopfloor-home")
    before = os.environ.get("SHOPFLOOR_HOME")
    os.environ["SHOPFLOOR_HOME"] = str(home)
    yield home
    if before is None:
        os.environ.pop("SHOPFLOOR_HOME", None)
    else:
        os.environ["SHOPFLOOR_HOME"] = before


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------- PostgreSQL
@pytest.fixture(scope="session")
def pg_server_url() -> str:
    return os.environ.get(
        "SHOPFLOOR_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
    )


@pytest.fixture(scope="session")
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    with throwaway_database(pg_server_url) as url:
        yield url


@pytest.fixture(scope="session")
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


# ---------------------------------------------------------------- MariaDB
@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    """A fresh MariaDB/MySQL database when one is reachable on 127.0.0.1:3306, else skip."""
    server = os.environ.get("SHOPFLOOR_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/")
    u = make_url(server)
    if not _reachable(u.host or "127.0.0.1", u.port or 3306):
        pytest.skip("MariaDB/MySQL not reachable")
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"shopfloor_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE `{name}`"))
    except Exception as exc:  # reachable but refusing us: same as absent
        pytest.skip(f"MariaDB/MySQL not usable: {exc}")
    yield u.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    admin.dispose()


# ---------------------------------------------------------------- SQLite
@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+pysqlite:///{tmp_path / 'shopfloor.db'}"


# ---------------------------------------------------------------- S3 (moto)
@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API (moto's server) on 127.0.0.1; credentials are fake test values."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A new, empty bucket on the moto server."""
    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(
        Bucket=name)
    return name


# ---------------------------------------------------------------- Prefect
@pytest.fixture(scope="session")
def prefect_harness(pg_server_url: str) -> Iterator[None]:
    """A temporary Prefect API for the whole session (blocks, flows, artifacts), on a
    throwaway PostgreSQL database (tests/prefect_harness.py says why not SQLite)."""
    from tests.prefect_harness import postgres_prefect_harness

    with throwaway_database(pg_server_url, "prefect_harness") as url, \
            postgres_prefect_harness(url, free_port()):
        yield
