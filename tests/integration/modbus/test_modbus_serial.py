"""Serial RTU: the simulator and the capture client on two ends of a pseudo-terminal link.

Two pty pairs joined by a copying thread stand in for a null-modem cable (what
``socat pty,raw,echo=0 pty,raw,echo=0`` does), so pyserial opens real tty devices on both
sides and pymodbus' serial server and client frame RTU (CRC, silent intervals) as on a
line. A pty passes bytes whatever its speed or stop bits, and this machine's kernel
refuses parity on a pty (``tcsetattr`` with PARENB: EINVAL), so the line runs without
parity: that both ends agree on the line's settings needs a real line to test.
"""

import os
import select
import threading
import time
import tty
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from shopfloor.db.schema import get_tables
from shopfloor.modbus.batch import Batch
from shopfloor.modbus.capture import CaptureStats, capture_device
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.engine import DeviceJob, capture_devices
from shopfloor.modbus.simulator import ModbusSimulator, SimulatedDevice, default_map
from shopfloor.modbus.tags import TagSpec

# Every register table, a multi-register float and integer in two word orders, a scaled
# value and a string: a framing or addressing slip on the line shows as a wrong value.
SERIAL_MAP = [
    TagSpec(name="air_temp", column="air_temp", address=0, data_type="float32"),
    TagSpec(name="count", column="count", address=2, data_type="int32", byte_order="CDAB"),
    TagSpec(name="rh", column="rh", address=4, data_type="uint16", scale=0.1),
    TagSpec(name="label", column="label", address=10, data_type="string", length=3),
    TagSpec(name="pcv_temp", column="pcv_temp", register_type="input", address=0,
            data_type="int16", scale=0.1),
    TagSpec(name="running", column="running", register_type="coil", address=0,
            data_type="bool"),
    TagSpec(name="door", column="door", register_type="discrete", address=1, data_type="bool"),
]
# Two devices on one line (RS-485 multi-drop): distinct values prove the unit id selects.
VALUES: dict[int, dict[str, float | str]] = {
    3: {"air_temp": 21.5, "count": -123456, "rh": 55.3, "label": "DRYER1", "pcv_temp": -12.5},
    5: {"air_temp": 30.25, "count": 70000, "rh": 12.0, "label": "OVEN-2", "pcv_temp": 81.0},
}
LINE = {"baudrate": 19200, "parity": "N", "stopbits": 2, "bytesize": 8}  # 8N2


@pytest.fixture
def null_modem() -> Iterator[tuple[str, str]]:
    """Two tty paths wired to each other."""
    (m1, s1), (m2, s2) = os.openpty(), os.openpty()
    for fd in (s1, s2):
        tty.setraw(fd)
    stop = threading.Event()

    def pump() -> None:
        while not stop.is_set():
            ready, _, _ = select.select([m1, m2], [], [], 0.1)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                os.write(m2 if fd == m1 else m1, data)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    yield os.ttyname(s1), os.ttyname(s2)
    stop.set()
    thread.join(2)
    for fd in (m1, s1, m2, s2):
        os.close(fd)


def _configs(client_end: str) -> list[DeviceConfig]:
    return [DeviceConfig(f"serial-{unit}", f"L{unit}", tuple(SERIAL_MAP), transport="serial",
                         serial_port=client_end, unit_id=unit, timeout_seconds=1.0,
                         retries=1, backoff_seconds=0.05, **LINE)  # type: ignore[arg-type]
            for unit in VALUES]


def _capture(cfgs: list[DeviceConfig], engine: bool) -> dict[str, tuple[CaptureStats, Batch]]:
    """Two samples of every device back to back (interval 0: one batch, no slot to miss
    on a loaded machine), through the threaded loop or the flow's async engine."""
    batches: dict[str, list[Batch]] = {c.name: [] for c in cfgs}
    if engine:
        jobs = [DeviceJob(c, batches[c.name].append, CaptureStats(c.name)) for c in cfgs]
        stats = capture_devices(jobs, samples=2, interval=0.0, anchor=time.time())
    else:
        stats = [capture_device(c, 2, 0.0, time.time(), batches[c.name].append) for c in cfgs]
    out = {}
    for cfg, s in zip(cfgs, stats, strict=True):
        (batch,) = batches[cfg.name]
        out[cfg.name] = (s, batch)
    return out


@pytest.mark.parametrize("engine", [False, True], ids=["thread", "engine"])
def test_serial_rtu_capture_reads_exact_values_over_a_pty_line(
        null_modem: tuple[str, str], engine: bool):
    """Two devices at unit ids 3 and 5 on one 8N2 line, served by pymodbus' serial server
    on one end, captured on the other: every tag of every sample decodes to the value the
    device serves, through both the threaded loop and the flow's engine (which hands
    serial devices to it, one thread each, sharing the line's one client, polls
    serialised by the line's lock). With a client per device the engine's variant failed
    8 runs of 10 ("connection refused or unreachable")."""
    server_end, client_end = null_modem
    sims = [SimulatedDevice(0, SERIAL_MAP, unit_id=unit, serial_port=server_end,
                            values=dict(values), **LINE)  # type: ignore[arg-type]
            for unit, values in VALUES.items()]
    with ModbusSimulator(sims):
        got = _capture(_configs(client_end), engine)
    for unit, values in VALUES.items():
        stats, batch = got[f"serial-{unit}"]
        assert (stats.samples_ok, stats.requests_failed) == (2, 0), stats.errors
        frame = batch.frame()
        assert len(frame) == 2 and (frame["missing_tags"] == "").all()
        for name, value in values.items():
            expected = value if isinstance(value, str) else pytest.approx(value, abs=1e-9)
            assert frame[name].tolist() == [expected] * 2, (unit, name)
        assert frame["running"].tolist() == [1.0, 1.0] and frame["door"].tolist() == [1.0, 1.0]


def test_a_unit_id_nobody_answers_on_the_line_is_a_failed_sample(null_modem: tuple[str, str]):
    """A device asked at a unit id no device on the line has: no answer within the
    timeout, counted as failed samples, never a wrong value."""
    server_end, client_end = null_modem
    sim = SimulatedDevice(0, SERIAL_MAP, unit_id=3, serial_port=server_end,
                          values=dict(VALUES[3]), **LINE)  # type: ignore[arg-type]
    cfg = DeviceConfig("serial-9", "L9", tuple(SERIAL_MAP), transport="serial",
                       serial_port=client_end, unit_id=9, timeout_seconds=0.3, retries=0,
                       **LINE)  # type: ignore[arg-type]
    batches: list[Batch] = []
    with ModbusSimulator([sim]):
        stats = capture_device(cfg, 1, 0.0, time.time(), batches.append)
    assert stats.samples_ok == 0 and stats.samples_failed == 1 and not batches


def test_a_line_file_serial_device_lands_exact_values_in_the_warehouse(
        null_modem: tuple[str, str], target_db: str, pg_engine: sa.Engine, tmp_path):
    """The whole path a plant uses: a line file names a serial device (``transport:
    serial`` with its port and line settings, checked by the file's schema), a
    modbus-capture run polls it over the pty line, and ``temperature_raw`` holds the
    values the device serves."""
    from flows.modbus_capture import modbus_capture

    server_end, client_end = null_modem
    values: dict[str, float | str] = {"air_temp": 21.5, "air_rh": 55.3, "pcv_temp": -12.5}
    sim = SimulatedDevice(0, default_map(), unit_id=4, serial_port=server_end,
                          values=values, **LINE)  # type: ignore[arg-type]
    tags = ", ".join(f"{{name: {t.name}, column: {t.column}, register_type: "
                     f"{t.register_type}, address: {t.address}, data_type: {t.data_type}, "
                     f"byte_order: {t.byte_order}, scale: {t.scale}}}" for t in default_map())
    line = tmp_path / "line.yaml"
    line.write_text(
        f"devices:\n  - {{name: serial-dryer, transport: serial, serial_port: '{client_end}',"
        f" baudrate: 19200, parity: N, stopbits: 2, bytesize: 8, unit_id: 4,"
        f" loc_id: SERIAL-1, timeout_seconds: 1.0, retries: 1, backoff_seconds: 0.05,"
        f" tags: [{tags}]}}\n", encoding="utf-8")
    with ModbusSimulator([sim]):
        rows = modbus_capture(samples=2, interval_seconds=0.2, target_db=target_db,
                              line_file=str(line))
    assert [(r["device"], r["rows_written"]) for r in rows] == [("serial-dryer", 2)]
    t = get_tables().temperature_raw
    with pg_engine.connect() as conn:
        got = conn.execute(sa.select(t.c.temperature, t.c.humidity, t.c.pcv_temperature,
                                  t.c.device).where(t.c.loc_id == "SERIAL-1")).all()
    assert [tuple(r) for r in got] == [
        (21.5, pytest.approx(55.3), pytest.approx(-12.5), "serial-dryer")] * 2
