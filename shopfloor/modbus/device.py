"""A device's settings, declared once: the dataclass the capture reads, and its defaults.

The ``ModbusDevice`` block (``blocks/modbus.py``) has one field per setting, with these
defaults, and builds a :class:`DeviceConfig` field by field (:data:`DEVICE_SETTINGS`);
the ``shopfloor modbus add-device`` options default to :data:`DEVICE_DEFAULTS`. A unit
test keeps the block's fields and defaults equal to the dataclass's.

Kept free of pymodbus and pydantic imports, so the command line can read the defaults
without paying for them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from shopfloor.modbus.tags import TagSpec

MAX_REGISTERS = 125  # registers per read, the protocol's limit
MAX_BITS = 2000  # coils or discrete inputs per read, the protocol's limit

Transport = Literal["tcp", "rtu-over-tcp", "serial"]
Parity = Literal["N", "E", "O"]


@dataclass(frozen=True)
class DeviceConfig:
    """Everything the capture needs about one device (plain values, built from the block)."""

    name: str
    loc_id: str
    tags: tuple[TagSpec, ...]
    host: str = "127.0.0.1"
    port: int = 502
    unit_id: int = 1
    transport: Transport = "tcp"
    serial_port: str | None = None
    baudrate: int = 9600
    parity: Parity = "N"
    stopbits: int = 1
    bytesize: int = 8
    timeout_seconds: float = 3.0
    retries: int = 2
    backoff_seconds: float = 0.2
    max_registers_per_request: int = MAX_REGISTERS
    max_bits_per_request: int = MAX_BITS
    max_gap_registers: int = 10
    district: str = ""
    # Workarounds for devices that need them (Telegraf's ``workarounds``; docs/modbus.md)
    pause_after_connect_seconds: float = 0.0
    pause_between_requests_seconds: float = 0.0
    close_connection_after_poll: bool = False
    one_request_per_tag: bool = False
    read_coils_starting_at_zero: bool = False


# ``name`` is the block's name and ``tags`` its ``register_map``: every other field of
# DeviceConfig is a setting the block holds under the same name.
DEVICE_SETTINGS: tuple[str, ...] = tuple(
    f.name for f in fields(DeviceConfig) if f.name not in ("name", "tags"))

DEVICE_DEFAULTS = DeviceConfig(name="", loc_id="", tags=())
"""The default of every setting (``loc_id`` has none: the block requires it)."""

WORKAROUNDS: tuple[str, ...] = (
    "pause_after_connect_seconds", "pause_between_requests_seconds",
    "close_connection_after_poll", "one_request_per_tag", "read_coils_starting_at_zero",
)
"""The settings a register map file may also carry, under ``workarounds:`` (a device's
quirks belong with its map): ``shopfloor modbus add-device`` applies them."""
MAX_PAUSE_SECONDS = 60.0
