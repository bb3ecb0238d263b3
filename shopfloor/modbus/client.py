"""Talking to one device: a client per transport, reads with bounded retries and backoff."""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType

from shopfloor.modbus.device import DeviceConfig
from shopfloor.modbus.planning import ReadRequest, plan_requests
from shopfloor.modbus.tags import BIT_REGISTER_TYPES

# pymodbus logs every failed read with a hex dump at ERROR; failures are counted and
# reported by the capture itself, so only pymodbus' critical messages are kept.
logging.getLogger("pymodbus.logging").setLevel(logging.CRITICAL)

_READERS = {
    "coil": "read_coils", "discrete": "read_discrete_inputs",
    "holding": "read_holding_registers", "input": "read_input_registers",
}


class DeviceError(Exception):
    """A read failed: no connection, no answer in time, or a Modbus exception response."""

    def __init__(self, message: str, connection: bool):
        super().__init__(message)
        self.connection = connection  # True: the link is down, other reads would fail too


def make_client(cfg: DeviceConfig) -> Any:
    """A synchronous pymodbus client for the device's transport (not yet connected).

    pymodbus' own retries are off: :func:`poll_sample` retries with backoff, bounded by
    the sample's time budget.
    """
    if cfg.transport == "serial":
        return ModbusSerialClient(
            cfg.serial_port or "", framer=FramerType.RTU, baudrate=cfg.baudrate,
            parity=cfg.parity, stopbits=cfg.stopbits, bytesize=cfg.bytesize,
            timeout=cfg.timeout_seconds, retries=0, reconnect_delay=0)
    framer = FramerType.RTU if cfg.transport == "rtu-over-tcp" else FramerType.SOCKET
    return ModbusTcpClient(cfg.host, port=cfg.port, framer=framer, timeout=cfg.timeout_seconds,
                           retries=0, reconnect_delay=0)


def read_request(client: Any, request: ReadRequest, unit_id: int,
                 pause_after_connect: float = 0.0,
                 sleep: Callable[[float], None] = time.sleep) -> list[int] | list[bool]:
    """Words (or bits) of one planned read, connecting first if the client is not.

    ``pause_after_connect`` seconds pass between a new connection and its first request
    (Telegraf's ``pause_after_connect``).

    Raises:
        DeviceError: on a Modbus exception response, a timeout or a broken connection.
    """
    try:
        if not client.connected:
            if not client.connect():
                raise DeviceError("connection refused or unreachable", connection=True)
            if pause_after_connect > 0:
                sleep(pause_after_connect)
        reader = getattr(client, _READERS[request.register_type])
        response = reader(request.address, count=request.count, device_id=unit_id)
    except (ModbusException, OSError) as exc:
        # pymodbus raises its own exceptions for timeouts and garbled frames, but a peer
        # that resets or drops the connection mid-read surfaces as a plain OSError
        # (ConnectionResetError, BrokenPipeError): both are a failed read, never a crash
        # of the device's capture (which would lose its unwritten batch).
        client.close()  # a half-read answer would desynchronise the next request
        raise DeviceError(f"no answer: {type(exc).__name__}: {exc}", connection=True) from None
    if response.isError():
        code = getattr(response, "exception_code", "?")
        raise DeviceError(f"modbus exception {code} reading {request.register_type} "
                          f"{request.address}+{request.count}", connection=False)
    if request.register_type in BIT_REGISTER_TYPES:
        return list(response.bits[:request.count])
    return response.registers


@dataclass
class SampleResult:
    """What one poll of a device produced."""

    payloads: dict[int, list[int] | list[bool]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    requests_sent: int = 0
    requests_failed: int = 0

    @property
    def ok(self) -> bool:
        """At least one read answered (missing tags are then quarantined, not lost)."""
        return bool(self.payloads)


def _read_with_retries(client: Any, index: int, request: ReadRequest, cfg: DeviceConfig,
                       result: SampleResult, deadline: float,
                       sleep: Callable[[float], None]) -> bool:
    for attempt in range(cfg.retries + 1):
        if result.requests_sent and cfg.pause_between_requests_seconds > 0:
            sleep(cfg.pause_between_requests_seconds)  # after any earlier request or retry
        result.requests_sent += 1
        try:
            payload = read_request(client, request, cfg.unit_id,
                                   cfg.pause_after_connect_seconds, sleep)
        except DeviceError as exc:
            backoff = cfg.backoff_seconds * 2 ** attempt
            last = attempt == cfg.retries or time.time() + backoff + cfg.timeout_seconds > deadline
            if last:
                result.requests_failed += 1
                result.errors.append(str(exc))
                return not exc.connection
            sleep(backoff)
            continue
        result.payloads[index] = payload  # decoded per batch, see decode_batch
        return True
    return True  # pragma: no cover - the loop always returns


def poll_sample(client: Any, plan: list[ReadRequest], cfg: DeviceConfig, deadline: float,
                sleep: Callable[[float], None] = time.sleep) -> SampleResult:
    """Issue every planned read once, retrying failures with exponential backoff.

    Retries stop at ``cfg.retries`` or when the next attempt could not finish before
    ``deadline`` (the next sample's time), so a dead device never pushes its schedule.
    A connection-level failure ends the sample: the other reads would fail the same way.
    With ``cfg.close_connection_after_poll`` the connection is closed at the end (the
    next poll connects again).
    """
    result = SampleResult()
    try:
        for index, request in enumerate(plan):
            if not _read_with_retries(client, index, request, cfg, result, deadline, sleep):
                break
    finally:
        if cfg.close_connection_after_poll:
            client.close()
    return result


def device_plan(cfg: DeviceConfig) -> list[ReadRequest]:
    """The device's planned reads (raises ShopfloorError naming a tag that cannot fit)."""
    return plan_requests(cfg.tags, cfg.max_registers_per_request, cfg.max_gap_registers,
                         cfg.max_bits_per_request, one_per_tag=cfg.one_request_per_tag,
                         coils_from_zero=cfg.read_coils_starting_at_zero)
