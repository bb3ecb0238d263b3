"""The ``ModbusDevice`` block: where a device is and what to read from it."""

from prefect.blocks.core import Block
from pydantic import AliasChoices, Field

from shopfloor.errors import UserError
from shopfloor.modbus.device import (
    DEVICE_DEFAULTS,
    DEVICE_SETTINGS,
    MAX_BITS,
    MAX_PAUSE_SECONDS,
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

    Each field's description says what it holds; docs/modbus.md describes the register
    map format, the transports and how reads are planned. The block has no logo (the UI
    shows Prefect's default icon) and no documentation URL: the docs ship with the code.

    Example:
        ```python
        from blocks.modbus import ModbusDevice

        device = ModbusDevice.load("BLOCK_NAME")
        config = device.to_config("BLOCK_NAME")  # checks the register map
        ```
    """

    _block_type_name = "Modbus Device"
    _block_type_slug = "shopfloor-modbus-device"
    _description = "A Modbus TCP / RTU device and its register map, polled by modbus-capture."

    host: str = Field(default=_D.host, description="Host of a TCP or RTU-over-TCP device.")
    port: int = Field(default=_D.port, ge=1, le=65535,
                      description="TCP port of a TCP or RTU-over-TCP device.")
    unit_id: int = Field(default=_D.unit_id, ge=0, le=255,
                         description="Modbus unit id.")
    transport: Transport = Field(
        default=_D.transport,
        description="tcp (Modbus TCP), rtu-over-tcp (RTU frames over a TCP socket) or "
                    "serial (RTU on a serial line).")
    serial_port: str | None = Field(default=_D.serial_port,
                                    description="e.g. /dev/ttyUSB0.")
    # The same limits as a line file's (shopfloor/modbus/line.py), a unit test keeps them so
    baudrate: int = Field(default=_D.baudrate, ge=1, description="Serial line speed in baud.")
    parity: Parity = Field(default=_D.parity,
                           description="Serial parity: N (none), E (even) or O (odd).")
    stopbits: int = Field(default=_D.stopbits, ge=1, le=2, description="Serial stop bits: 1 or 2.")
    bytesize: int = Field(default=_D.bytesize, ge=5, le=8,
                          description="Serial data bits per character: 5 to 8.")
    timeout_seconds: float = Field(default=_D.timeout_seconds, gt=0,
                                   description="Per-request timeout in seconds.")
    retries: int = Field(default=_D.retries, ge=0, le=10,
                         description="Attempts after a failed read, with backoff.")
    backoff_seconds: float = Field(default=_D.backoff_seconds, ge=0,
                                   description="First retry delay.")
    loc_id: str = Field(description="Location id the readings are stored under.")
    # Blocks saved before 2026-12 hold the seed's spelling, ``dstrct_code``: still read.
    district: str = Field(default=_D.district,
                          validation_alias=AliasChoices("district", "dstrct_code"),
                          description="District code for landed JSON (dstrct_code=...).")
    max_registers_per_request: int = Field(
        default=_D.max_registers_per_request, ge=1, le=MAX_REGISTERS,
        description="Most registers per read; lower it for devices that reject long reads.")
    max_bits_per_request: int = Field(
        default=_D.max_bits_per_request, ge=1, le=MAX_BITS,
        description="Most coils or discrete inputs per read.")
    max_gap_registers: int = Field(
        default=_D.max_gap_registers, ge=0,
        description="Unused registers a merged read may span.")
    # Workarounds (Telegraf's ``workarounds``: docs/modbus.md names each counterpart).
    pause_after_connect_seconds: float = Field(
        default=_D.pause_after_connect_seconds, ge=0, le=MAX_PAUSE_SECONDS,
        description="Wait this long after connecting before the first request "
                    "(devices that drop requests while their link comes up).")
    pause_between_requests_seconds: float = Field(
        default=_D.pause_between_requests_seconds, ge=0, le=MAX_PAUSE_SECONDS,
        description="Wait this long between two requests (slow devices, serial gateways).")
    close_connection_after_poll: bool = Field(
        default=_D.close_connection_after_poll,
        description="Close the connection after every poll and connect again for the next "
                    "(devices or gateways that drop idle connections without telling).")
    one_request_per_tag: bool = Field(
        default=_D.one_request_per_tag,
        description="Read every tag with its own request (devices that refuse reads "
                    "spanning several values).")
    read_coils_starting_at_zero: bool = Field(
        default=_D.read_coils_starting_at_zero,
        description="Start the first coil read at address 0 (devices that refuse coil "
                    "reads starting elsewhere).")
    register_map: list[TagSpec] = Field(
        default_factory=list, description="The tags to read (format: docs/modbus.md).")

    def to_config(self, name: str) -> DeviceConfig:
        """Plain settings for the capture code, after checking the register map.

        Raises:
            ShopfloorError: the map is invalid (the message names the tag).
        """
        validate_register_map(list(self.register_map))
        if self.transport == "serial" and not self.serial_port:
            raise UserError(f"device {name}: transport serial needs serial_port")
        settings = {key: getattr(self, key) for key in DEVICE_SETTINGS}
        return DeviceConfig(name=name, tags=tuple(self.register_map), **settings)
