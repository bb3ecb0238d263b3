"""The ``ModbusDevice`` block: where a device is and what to read from it."""

from typing import Literal

from prefect.blocks.core import Block
from pydantic import Field

from shopfloor.errors import ShopfloorError
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.tags import TagSpec, validate_register_map


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

    host: str = Field(default="127.0.0.1", description="Host of a TCP or RTU-over-TCP device")
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=255, description="Modbus unit id")
    transport: Literal["tcp", "rtu-over-tcp", "serial"] = "tcp"
    serial_port: str | None = Field(default=None, description="e.g. /dev/ttyUSB0")
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: int = 1
    bytesize: int = 8
    timeout_seconds: float = Field(default=3.0, gt=0)
    retries: int = Field(default=2, ge=0, le=10)
    backoff_seconds: float = Field(default=0.2, ge=0, description="First retry delay")
    loc_id: str = Field(description="Location id the readings are stored under")
    dstrct_code: str = Field(default="", description="District code for landed JSON")
    max_registers_per_request: int = Field(default=125, ge=1, le=125)
    max_bits_per_request: int = Field(default=2000, ge=1, le=2000)
    max_gap_registers: int = Field(default=10, ge=0)
    register_map: list[TagSpec] = Field(default_factory=list)

    def to_config(self, name: str) -> DeviceConfig:
        """Plain settings for the capture code, after checking the register map.

        Raises:
            ShopfloorError: the map is invalid (the message names the tag).
        """
        validate_register_map(list(self.register_map))
        if self.transport == "serial" and not self.serial_port:
            raise ShopfloorError(f"device {name}: transport serial needs serial_port")
        return DeviceConfig(
            name=name, loc_id=self.loc_id, tags=tuple(self.register_map), host=self.host,
            port=self.port, unit_id=self.unit_id, transport=self.transport,
            serial_port=self.serial_port, baudrate=self.baudrate, parity=self.parity,
            stopbits=self.stopbits, bytesize=self.bytesize,
            timeout_seconds=self.timeout_seconds, retries=self.retries,
            backoff_seconds=self.backoff_seconds,
            max_registers_per_request=self.max_registers_per_request,
            max_bits_per_request=self.max_bits_per_request,
            max_gap_registers=self.max_gap_registers, dstrct_code=self.dstrct_code,
        )
