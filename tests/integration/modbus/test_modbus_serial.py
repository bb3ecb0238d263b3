"""Serial RTU: the simulator and the capture client on two ends of a pseudo-terminal link.

Two pty pairs joined by a copying thread stand in for a null-modem cable (what
``socat pty,raw pty,raw`` would do), so pyserial opens real tty devices.
"""

import os
import select
import threading
import time
import tty
from collections.abc import Iterator

import pytest

from shopfloor.modbus.capture import capture_device
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.simulator import ModbusSimulator, SimulatedDevice, default_map


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


def test_serial_rtu_capture_over_a_pty_link(null_modem: tuple[str, str]):
    server_end, client_end = null_modem
    sim = SimulatedDevice(0, default_map(), unit_id=3, serial_port=server_end, baudrate=19200)
    cfg = DeviceConfig("serial-plc", "L1", tuple(default_map()), transport="serial",
                       serial_port=client_end, baudrate=19200, unit_id=3, timeout_seconds=1)
    got = []
    with ModbusSimulator([sim]):
        stats = capture_device(cfg, 2, 0.2, time.time() + 0.2, got.append)
    assert stats.samples_ok == 2 and stats.requests_failed == 0, stats.errors
    (frame,) = [batch.frame() for batch in got]  # one batch of two samples
    assert len(frame) == 2 and frame["temperature"].between(-20, 80).all()
    assert frame["humidity"].between(0, 100).all() and (frame["running"] == 1.0).all()
    assert (frame["missing_tags"] == "").all()
