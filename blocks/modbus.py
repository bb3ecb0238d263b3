"""The ``ModbusDevice`` block: where a device is and what to read from it."""

from prefect.blocks.core import Block
from pydantic import Field

from shopfloor.errors import ShopfloorError
from shopfloor.modbus.device import (
    DEVICE_DEFAULTS,
    DEVICE_SETTINGS,
    MAX_BITS,
    MAX_REGISTERS,
    DeviceConfig,
    Parity,
    Transport,
)
from shopfloor.modbus.tags import TagSpec, validate_register_map

# Every field but ``register_map`` is a DeviceConfig setting of the same name and takes
# its default from there (tests/unit/test_modbus_block.py holds the two together).
_D = DEVICE_DEFAULTS


class ModbusDevice(Block):
    """A Modbus device (PLC, sensor gateway) polled by the ``modbus-capture`` flow.

    Attributes:
        host: host name or IP of a TCP or RTU-over-TCP device.
        port: TCP port (502 by default).
        unit_id: Modbus unit (device/slave) id.
        transport: ``tcp``, ``rtu-over-tcp`` or ``serial`` (RTU on a serial line).
        serial_port: serial device path, for ``serial``.
        baudrate, parity, stopbits, bytesize: serial line settings.
        timeout_seconds: per-request timeout.
        retries: attempts after the first failure, with backoff.
        backoff_seconds: wait before the first retry; doubles with every retry.
        loc_id: location id the readings are stored under.
        dstrct_code: district code written into landed JSON telemetry.
        max_registers_per_request: lower this for devices that reject long reads.
        max_bits_per_request: the same for coils and discrete inputs (2000 at most).
        max_gap_registers: unused registers a coalesced read may span.
        register_map: the tags to read (see docs/modbus.md for the format).
    """

    _block_type_name = "Modbus Device"
    _block_type_slug = "shopfloor-modbus-device"
    _description = "A Modbus TCP / RTU device and its register map, polled by modbus-capture."

    host: str = Field(default=_D.host, description="Host of a TCP or RTU-over-TCP device")
    port: int = Field(default=_D.port, ge=1, le=65535)
    unit_id: int = Field(default=_D.unit_id, ge=0, le=255, description="Modbus unit id")
    transport: Transport = _D.transport
    serial_port: str | None = Field(default=_D.serial_port, description="e.g. /dev/ttyUSB0")
    baudrate: int = _D.baudrate
    parity: Parity = _D.parity
    stopbits: int = _D.stopbits
    bytesize: int = _D.bytesize
    timeout_seconds: float = Field(default=_D.timeout_seconds, gt=0)
    retries: int = Field(default=_D.retries, ge=0, le=10)
    backoff_seconds: float = Field(default=_D.backoff_seconds, ge=0,
                                   description="First retry delay")
    loc_id: str = Field(description="Location id the readings are stored under")
    dstrct_code: str = Field(default=_D.dstrct_code, description="District code for landed JSON")
    max_registers_per_request: int = Field(default=_D.max_registers_per_request, ge=1,
                                           le=MAX_REGISTERS)
    max_bits_per_request: int = Field(default=_D.max_bits_per_request, ge=1, le=MAX_BITS)
    max_gap_registers: int = Field(default=_D.max_gap_registers, ge=0)
    register_map: list[TagSpec] = Field(default_factory=list)

    def to_config(self, name: str) -> DeviceConfig:
        """Plain settings for the capture code, after checking the register map.

        Raises:
            ShopfloorError: the map is invalid (the message names the tag).
        """
        validate_register_map(list(self.register_map))
        if self.transport == "serial" and not self.serial_port:
            raise ShopfloorError(f"device {name}: transport serial needs serial_port")
        settings = {key: getattr(self, key) for key in DEVICE_SETTINGS}
        return DeviceConfig(name=name, tags=tuple(self.register_map), **settings)
