"""Fixtures of the Modbus tests: a simulator with healthy and faulty devices, blocks."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from shopfloor.modbus.simulator import ModbusSimulator, SimulatedDevice, default_map
from tests.conftest import free_port

FAULTY = ("refuse", "nan", "exception", "out-of-range", "no-answer")


# The simulator, its device blocks and the target block are made once per test process,
# not once per module: seven modules use them, and the eight block saves alone cost
# about 4 s on an idle machine and 30-75 s on a loaded one (measured). No test changes
# these devices or blocks: a test that needs a fault of its own or another map starts
# its own device and saves its own block; the database behind the target was per
# session already (pg_url).
@pytest.fixture(scope="session")
def simulator() -> Iterator[dict[str, SimulatedDevice]]:
    """Two healthy devices and one per fault, each on its own port, serving the
    simulator's own map (float32 in CDAB, scaled integers, a coil)."""
    devices = {f"ok-{i}": SimulatedDevice(free_port(), default_map(), phase=i) for i in (1, 2)}
    devices.update({f"bad-{f}": SimulatedDevice(free_port(), default_map(), fault=f)
                    for f in FAULTY})
    devices["rtu"] = SimulatedDevice(free_port(), default_map(), framer="rtu", unit_id=7)
    with ModbusSimulator(list(devices.values())):
        yield devices


@pytest.fixture(scope="session")
def device_blocks(simulator: dict[str, SimulatedDevice], prefect_harness: None) -> list[str]:
    """A ModbusDevice block per simulated device, named ``mb-<key>``."""
    from blocks.modbus import ModbusDevice

    names = []
    for key, dev in simulator.items():
        transport = "rtu-over-tcp" if dev.framer == "rtu" else "tcp"
        ModbusDevice(host="127.0.0.1", port=dev.port, unit_id=dev.unit_id, transport=transport,
                     loc_id=f"LOC-{key}", district="D7", timeout_seconds=0.5, retries=1,
                     backoff_seconds=0.05, register_map=dev.tags).save(
            f"mb-{key}", overwrite=True)
        names.append(f"mb-{key}")
    return names


@pytest.fixture(scope="session")
def target_db(pg_url: str, prefect_harness: None) -> str:
    """A SqlAlchemyConnector block on the test PostgreSQL database, tables created."""
    from blocks.bootstrap import connector_from_url
    from shopfloor.db.engine import init_db, make_engine

    engine = make_engine(pg_url)
    init_db(engine)
    engine.dispose()
    connector_from_url(pg_url).save("modbus-test-db", overwrite=True)
    return "modbus-test-db"


@pytest.fixture
def raw_logs(tmp_path: Path, prefect_harness: None) -> Path:
    """A LocalFileSystem block ``modbus-test-raw`` on a fresh folder."""
    from prefect.filesystems import LocalFileSystem

    LocalFileSystem(basepath=str(tmp_path / "raw")).save("modbus-test-raw", overwrite=True)
    return tmp_path / "raw"


@pytest.fixture(autouse=True)
def buffer_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's own SHOPFLOOR_HOME, so the collector's buffer (store and forward)
    of one test never holds a backlog for the next."""
    home = tmp_path / "home"
    monkeypatch.setenv("SHOPFLOOR_HOME", str(home))
    return home
