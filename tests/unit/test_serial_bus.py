"""One client per serial line: grouping by port, the line's settings, its timeout."""

import pytest

from shopfloor.errors import UserError
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.serial_bus import line_client, serial_lines
from shopfloor.modbus.simulator import default_map

pytestmark = pytest.mark.unit


def _serial(name: str, port: str, **kw: object) -> DeviceConfig:
    return DeviceConfig(name, name.upper(), tuple(default_map()), transport="serial",
                        serial_port=port, **kw)  # type: ignore[arg-type]


def test_devices_are_grouped_by_port_in_order_and_tcp_devices_left_out():
    a, b, c = _serial("a", "/dev/ttyA", unit_id=1), _serial("b", "/dev/ttyB"), \
        _serial("c", "/dev/ttyA", unit_id=2)
    tcp = DeviceConfig("t", "T", tuple(default_map()))
    assert serial_lines([a, tcp, b, c]) == {"/dev/ttyA": [a, c], "/dev/ttyB": [b]}


def test_two_devices_of_one_port_with_different_line_settings_are_refused_by_name():
    a = _serial("dryer", "/dev/ttyA", baudrate=19200, parity="E")
    b = _serial("oven", "/dev/ttyA", baudrate=9600, parity="E", unit_id=2)
    with pytest.raises(UserError, match=r"'dryer' and 'oven' are on serial port "
                       r"'/dev/ttyA' with different line settings \(baudrate 19200 / 9600\)"):
        serial_lines([a, b])


def test_the_line_client_waits_as_long_as_its_most_patient_device():
    a = _serial("a", "/dev/ttyA", timeout_seconds=0.5, baudrate=19200)
    b = _serial("b", "/dev/ttyA", timeout_seconds=2.0, baudrate=19200, unit_id=2)
    client = line_client([a, b])
    assert client.comm_params.timeout_connect == 2.0
    assert client.comm_params.baudrate == 19200 and not client.connected
