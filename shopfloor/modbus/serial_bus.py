"""One client per serial line: the devices of an RS-485 bus share its port.

A serial line is one bus: every device on it hears every frame, and the master asks one
unit id at a time. Two clients opened on one port would each read whatever bytes
arrive, so one device's answer could land in the other's client (and pymodbus opens a
port for one client at a time: the second connect fails). The devices of a line
therefore share one client, opened once for the run and closed after its last device is
done; their polls are serialised by the line's gateway lock (``serial:<port>``,
:func:`~shopfloor.modbus.gateway.gateway_key`).
"""

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from shopfloor.errors import UserError
from shopfloor.modbus.client import DeviceConfig, make_client

# What every device of one line must agree on: the line's framing.
LINE_SETTINGS = ("baudrate", "parity", "stopbits", "bytesize")


def line_settings(cfg: DeviceConfig) -> tuple[object, ...]:
    """The settings of the line ``cfg`` is on (speed, parity, stop bits, data bits)."""
    return tuple(getattr(cfg, name) for name in LINE_SETTINGS)


def serial_lines(configs: Iterable[DeviceConfig]) -> dict[str, list[DeviceConfig]]:
    """The serial devices of ``configs`` by port, in their order.

    Raises:
        UserError: two devices of one port disagree on the line's settings (one line has
            one speed and framing), naming both and what differs.
    """
    lines: dict[str, list[DeviceConfig]] = {}
    for cfg in configs:
        if cfg.transport != "serial":
            continue
        port = cfg.serial_port or ""
        first = lines.setdefault(port, [cfg])[0]
        if first is cfg:
            continue
        if line_settings(first) != line_settings(cfg):
            differ = ", ".join(f"{name} {getattr(first, name)} / {getattr(cfg, name)}"
                               for name in LINE_SETTINGS
                               if getattr(first, name) != getattr(cfg, name))
            raise UserError(
                f"devices {first.name!r} and {cfg.name!r} are on serial port {port!r} with "
                f"different line settings ({differ}): the devices of one line share its "
                "speed and framing")
        lines[port].append(cfg)
    return lines


def line_client(configs: list[DeviceConfig]) -> Any:
    """One synchronous client for the devices of a line (not yet connected); it waits
    for an answer as long as the most patient of them (a client has one timeout)."""
    slowest = max(c.timeout_seconds for c in configs)
    return make_client(replace(configs[0], timeout_seconds=slowest))
