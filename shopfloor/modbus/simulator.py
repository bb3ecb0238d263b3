"""A Modbus simulator: one pymodbus server per device, values that drift slowly, faults.

Every device's server runs on one event loop in one background thread, so one process
serves hundreds of devices (500 devices of 20 tags polled every second cost about 8 %
of a core, docs/modbus.md). Each :class:`SimulatedDevice` listens on its own port (like
one PLC per address) and serves its register map with realistic values: a slow sine
around a plausible base (temperature ~22 degC, humidity ~55 %, ...), inside the tag's
valid range when it has one. Faults, per device:

- ``refuse``: nothing listens on the port (connection refused)
- ``no-answer``: the connection is accepted but no request is ever answered
- ``delay``: every answer comes ``delay_seconds`` late
- ``exception``: every read answers Modbus exception ``exception_code`` (4: device failure)
- ``nan``: the first float tag reads NaN
- ``out-of-range``: the first tag with a valid range reads far above its maximum

Quirks of real devices, each the reason for one of the capture's workarounds
(docs/modbus.md), switched on per device: dropping requests that come too soon after
the connection opened or after the previous answer, going deaf on a connection left
idle, refusing a read that spans more than one tag, refusing coil reads that do not
start at address 0. ``values`` pins tags to fixed values (strings included), so a test
can check a decoded value exactly.
"""

import asyncio
import math
import os
import random
import socket
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusBaseServer, ModbusSerialServer, ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

from shopfloor.errors import ShopfloorError
from shopfloor.modbus.decoding import encode, encode_raw
from shopfloor.modbus.tags import TagSpec

FaultKind = Literal["none", "refuse", "no-answer", "delay", "exception", "nan", "out-of-range"]
FAULTS: tuple[str, ...] = FaultKind.__args__  # type: ignore[attr-defined]
_BASES = {"temperature": (22.0, 3.0), "humidity": (55.0, 10.0), "pcv_temperature": (35.0, 4.0)}
_FC_TYPE = {3: "holding", 4: "input"}
_NO_ANSWER_SECONDS = 3600.0


@dataclass
class SimulatedDevice:
    """One simulated device: where it listens, what it serves, which fault it shows."""

    port: int
    tags: list[TagSpec]
    unit_id: int = 1
    fault: FaultKind = "none"
    delay_seconds: float = 0.5
    exception_code: int = 4
    framer: Literal["socket", "rtu"] = "socket"
    phase: float = 0.0
    serial_port: str | None = None  # serve RTU on this serial device instead of TCP
    baudrate: int = 9600  # the serial line's settings (a pty ignores them, a tty does not)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: int = 1
    bytesize: int = 8
    values: dict[str, float | str] = field(default_factory=dict)  # fixed values by tag name
    quirks: "DeviceQuirks | None" = None
    requests: int = field(default=0, init=False)
    dropped: int = field(default=0, init=False)  # requests a quirk left unanswered
    connections: int = field(default=0, init=False)


@dataclass(frozen=True)
class DeviceQuirks:
    """How a fussy device misbehaves (TCP transports only; 0 / None / False: it does not).

    A dropped request gets no answer at all (the client times out), as real devices do.
    """

    drop_seconds_after_connect: float = 0.0  # drops requests this soon after a connect
    drop_seconds_between_requests: float = 0.0  # ... this soon after its last answer
    deaf_after_idle_seconds: float | None = None  # a connection idle longer goes deaf
    one_tag_per_request: bool = False  # a register read over 2+ tags: exception 3
    coils_from_zero: bool = False  # a coil read not starting at 0: exception 2


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    """The lowest port the kernel hands to outgoing connections (Linux; 32768 elsewhere)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


PORT_WINDOW_ENV = "SHOPFLOOR_PORT_WINDOW"
"""``low:high``: the ports :func:`free_port_run` draws from in this process. The tests
give each parallel worker its own window, so no two workers can draw the same port."""

_port_lock = threading.Lock()
_port_cursor: list[int] = []  # the next port this process may hand out, once drawn


def _port_window() -> tuple[int, int]:
    """The window of ports to draw from: ``SHOPFLOOR_PORT_WINDOW`` or, by default, from
    20000 up to the kernel's ephemeral range."""
    spec = os.environ.get(PORT_WINDOW_ENV, "")
    if spec:
        low, high = (int(part) for part in spec.split(":"))
        return low, high
    return port_window_default()


def port_window_default() -> tuple[int, int]:
    """From 20000 up to the kernel's ephemeral range (or all unprivileged ports)."""
    high = min(_ephemeral_low(), 65536)
    return (20000, high) if high - 20000 >= 1000 else (1024, 65536)


def free_port_run(count: int) -> int:
    """A first port on 127.0.0.1 with ``count`` free ports from it on (one per device).

    Drawn below the kernel's ephemeral range: a port handed out by ``bind(0)`` lies in
    that range, where any outgoing connection of a busy machine (a Prefect server and
    worker talking) may take it between this check and the simulator's listen. Ports
    are handed out in order from a random start inside the process's window and never
    twice by one process (until the window wraps), so two calls made before either
    port is bound cannot collide, as random draws once did (1 in ~10^4 per pair)."""
    low, high = _port_window()
    if count > high - low:
        raise RuntimeError(f"{count} ports do not fit in the window {low}:{high}")
    with _port_lock:
        if not _port_cursor:
            _port_cursor.append(random.SystemRandom().randrange(low, high))
        for _ in range(max(200, (high - low) // max(count, 1))):
            base = _port_cursor[0]
            if base + count > high:
                base = low
            _port_cursor[0] = base + count
            if all(_port_is_free(base + i) for i in range(count)):
                return base
    raise RuntimeError(f"no run of {count} free local ports found in {low}:{high}")


def default_map() -> list[TagSpec]:
    """The map the simulator serves unless told otherwise (also the demo's map)."""
    return [
        TagSpec(name="air_temp", column="temperature", address=0, data_type="float32",
                byte_order="CDAB", min_value=-20, max_value=80),
        TagSpec(name="air_rh", column="humidity", address=2, data_type="uint16", scale=0.1,
                min_value=0, max_value=100),
        TagSpec(name="pcv_temp", column="pcv_temperature", register_type="input", address=10,
                data_type="int16", scale=0.1, min_value=-40, max_value=150),
        TagSpec(name="running", column="running", register_type="coil", address=0,
                data_type="bool"),
    ]


def wide_map(tags: int = 20) -> list[TagSpec]:
    """``tags`` float32 holding registers back to back (one read covers them all while
    they fit in 125 registers): the plant-scale tests' and benchmarks' device. The first
    three land in the measure columns, the rest in ``tag_04``, ``tag_05``, ..."""
    columns = ["temperature", "humidity", "pcv_temperature"]
    ranges = [(-20, 80), (0, 100), (-40, 150)]
    out = []
    for i in range(tags):
        lo, hi = ranges[i] if i < 3 else (None, None)
        out.append(TagSpec(name=f"t{i + 1:02d}", column=columns[i] if i < 3 else
                           f"tag_{i + 1:02d}", address=2 * i, data_type="float32",
                           min_value=lo, max_value=hi))
    return out


def parse_faults(specs: Sequence[str], devices: int) -> dict[int, FaultKind]:
    """``["2=nan", "3=refuse"]`` -> ``{2: "nan", 3: "refuse"}`` (1-based device numbers)."""
    faults: dict[int, FaultKind] = {}
    for spec in specs:
        number, _, kind = spec.partition("=")
        if not number.strip().isdigit() or kind not in FAULTS:
            raise ShopfloorError(f"fault {spec!r}: use DEVICE=KIND with KIND one of "
                                 f"{', '.join(FAULTS)}")
        if not 1 <= int(number) <= devices:
            raise ShopfloorError(f"fault {spec!r}: device number must be 1..{devices}")
        faults[int(number)] = kind  # type: ignore[assignment]
    return faults


def build_devices(
    port: int, count: int, tags: Sequence[TagSpec], faults: dict[int, FaultKind] | None = None,
    framer: Literal["socket", "rtu"] = "socket", delay_seconds: float = 0.5,
    exception_code: int = 4,
) -> list[SimulatedDevice]:
    """``count`` devices on ports ``port``, ``port + 1``, ... serving ``tags``."""
    if count < 1 or port < 1 or port + count - 1 > 65535:
        raise ShopfloorError(f"need 1+ devices on ports 1..65535, got {count} from {port}")
    faults = faults or {}
    return [SimulatedDevice(port + i, list(tags), fault=faults.get(i + 1, "none"),
                            delay_seconds=delay_seconds, exception_code=exception_code,
                            framer=framer, phase=0.7 * i) for i in range(count)]


def _is_float(tag: TagSpec) -> bool:
    return tag.data_type in ("float16", "float32", "float64")


def _fault_tags(device: SimulatedDevice) -> tuple[str | None, str | None]:
    nan = next((t.name for t in device.tags if _is_float(t)), None)
    oor = next((t.name for t in device.tags
                if t.max_value is not None and t.is_numeric and not t.is_bit), None)
    return nan, oor


def tag_value(tag: TagSpec, now: float, phase: float = 0.0) -> float:
    """A plausible, slowly changing value for ``tag`` at time ``now`` (epoch seconds)."""
    if tag.is_bit:
        return 1.0
    base, amp = _BASES.get(tag.column, (100.0, 10.0))
    lo, hi = tag.min_value, tag.max_value
    span = tag.bit_span
    if span is not None and (lo is None or hi is None):  # a byte or bitfield: its range
        lo, hi = (-128, 127) if tag.data_type.startswith("int8") else (0, 2 ** span[1] - 1)
        lo, hi = lo * tag.scale + tag.offset, hi * tag.scale + tag.offset
    if lo is not None and hi is not None and not lo + amp <= base <= hi - amp:
        base, amp = (lo + hi) / 2, (hi - lo) / 4  # keep well inside the valid range
    if tag.data_type.startswith("uint"):
        base = max(base, amp)
    return base + amp * math.sin(2 * math.pi * now / 600.0 + phase)


class _DeviceState:
    """Fills registers on every read (values are computed at read time) and plays faults."""

    def __init__(self, device: SimulatedDevice):
        self.device = device
        self.nan_tag, self.oor_tag = _fault_tags(device)

    def _value(self, tag: TagSpec, now: float) -> float:
        if tag.name in self.device.values:
            return float(self.device.values[tag.name])
        if self.device.fault == "nan" and tag.name == self.nan_tag:
            return math.nan
        if self.device.fault == "out-of-range" and tag.name == self.oor_tag:
            return (tag.max_value or 0.0) + 1000.0
        return tag_value(tag, now, self.device.phase)

    async def action(self, func_code: int, start: int, address: int, count: int,
                     registers: list[int], values: object) -> ExcCodes | None:
        self.device.requests += 1
        fault = self.device.fault
        if fault in ("delay", "no-answer"):
            await asyncio.sleep(self.device.delay_seconds if fault == "delay"
                                else _NO_ANSWER_SECONDS)
        if fault == "exception":
            return ExcCodes(self.device.exception_code)
        refused = self._refused(func_code, address, count)
        if refused is not None:
            return refused
        register_type = _FC_TYPE.get(func_code)
        if values is None and register_type:
            self._fill(register_type, start, registers)
        return None

    def _refused(self, func_code: int, address: int, count: int) -> ExcCodes | None:
        quirks = self.device.quirks
        if quirks is None:
            return None
        if quirks.coils_from_zero and func_code == 1 and address != 0:
            return ExcCodes.ILLEGAL_ADDRESS
        register_type = _FC_TYPE.get(func_code)
        if quirks.one_tag_per_request and register_type:
            covered = [t for t in self.device.tags if t.register_type == register_type
                       and t.address < address + count and address < t.end]
            if len(covered) > 1:
                return ExcCodes.ILLEGAL_VALUE
        return None

    def _fill(self, register_type: str, start: int, registers: list[int]) -> None:
        now = time.time()
        shared: dict[int, int] = {}  # bits, bytes and bitfields of one register, OR-ed
        for tag in self.device.tags:
            if tag.register_type != register_type or tag.data_type == "string":
                continue
            words = encode(tag, self._value(tag, now))
            if tag.bit_span is not None:
                at = tag.address - start
                shared[at] = shared.get(at, 0) | words[0]
            else:
                registers[tag.address - start:tag.end - start] = words
        for at, word in shared.items():
            registers[at] = word


def _register_block(tags: Sequence[TagSpec], register_type: str,
                    fixed: dict[str, float | str]) -> list[SimData]:
    size = max((t.end for t in tags if t.register_type == register_type), default=0) + 16
    values = [0] * size
    for t in tags:
        if t.register_type == register_type and t.data_type == "string":
            # a string tag serves its fixed value, else its name
            values[t.address:t.end] = encode_raw(t, fixed.get(t.name, t.name))
    return [SimData(0, values=values, datatype=DataType.REGISTERS)]


def _bit_block(tags: Sequence[TagSpec], register_type: str) -> list[SimData]:
    size = max((t.end for t in tags if t.register_type == register_type), default=0) + 16
    bits = [False] * (size + (-size) % 16)
    for t in tags:
        if t.register_type == register_type:
            bits[t.address] = True
    return [SimData(0, values=bits, datatype=DataType.BITS)]


def sim_device(device: SimulatedDevice) -> SimDevice:
    """The pymodbus ``SimDevice`` serving ``device``'s map (separate blocks per type)."""
    state = _DeviceState(device)
    blocks = (_bit_block(device.tags, "coil"), _bit_block(device.tags, "discrete"),
              _register_block(device.tags, "holding", device.values),
              _register_block(device.tags, "input", device.values))
    return SimDevice(device.unit_id, simdata=blocks, action=state.action)


def _serial_server(line: Sequence[SimulatedDevice]) -> ModbusSerialServer:
    """One RTU server on a serial port for every device on it, each at its own unit id
    (an RS-485 multi-drop line); the line's settings are its first device's.

    Raises:
        ShopfloorError: two devices of the line share a unit id.
    """
    first = line[0]
    if len({d.unit_id for d in line}) < len(line):
        raise ShopfloorError(f"two simulated devices on {first.serial_port} share a unit id")
    return ModbusSerialServer([sim_device(d) for d in line], port=first.serial_port or "",
                              framer=FramerType.RTU, baudrate=first.baudrate,
                              parity=first.parity, stopbits=first.stopbits,
                              bytesize=first.bytesize)


class _QuirkyHandler(ServerRequestHandler):
    """One connection of a simulated device: plays the device's connection quirks."""

    def __init__(self, owner: "_TcpServer", *args: object):
        super().__init__(owner, *args)
        self.device = owner.device
        self.device.connections += 1
        self.opened = time.monotonic()
        self.last_answer: float | None = None
        self.deaf = False

    def _drops(self, now: float) -> bool:
        quirks = self.device.quirks
        if quirks is None:
            return False
        idle = now - (self.last_answer if self.last_answer is not None else self.opened)
        if quirks.deaf_after_idle_seconds is not None and idle > quirks.deaf_after_idle_seconds:
            self.deaf = True  # like a gateway that forgot the session: never answers again
        too_soon = (now - self.opened < quirks.drop_seconds_after_connect
                    or (self.last_answer is not None
                        and now - self.last_answer < quirks.drop_seconds_between_requests))
        return self.deaf or too_soon

    async def handle_request(self) -> None:
        if self.last_pdu and self._drops(time.monotonic()):
            self.device.dropped += 1
            return  # no answer: the client times out
        await super().handle_request()
        self.last_answer = time.monotonic()


class _TcpServer(ModbusTcpServer):
    """A TCP server whose connections play their device's quirks."""

    def __init__(self, device: SimulatedDevice, *args: object, **kwargs: object):
        self.device = device
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def callback_new_connection(self) -> ServerRequestHandler:
        return _QuirkyHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)


class ModbusSimulator:
    """Runs the devices' servers in a background thread with its own event loop.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, devices: Sequence[SimulatedDevice], host: str = "127.0.0.1"):
        self.devices = list(devices)
        self.host = host
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[ModbusBaseServer] = []
        self._ready = threading.Event()
        self._error: BaseException | None = None

    async def _start_servers(self) -> None:
        lines: dict[str, list[SimulatedDevice]] = {}  # serial port -> its devices
        for d in self.devices:
            if d.fault == "refuse":
                continue
            if d.serial_port:
                lines.setdefault(d.serial_port, []).append(d)
                continue
            server = self._server(d)
            try:
                await server.serve_forever(background=True)
            except RuntimeError as exc:  # pymodbus logs the OSError and says only this
                where = d.serial_port or f"{self.host}:{d.port}"
                busy = not d.serial_port and not _port_is_free(d.port)
                raise RuntimeError(f"{where}: {exc}" + (" (the port is in use)" if busy else "")
                                   ) from exc
            self._servers.append(server)
        for line in lines.values():
            server = _serial_server(line)
            await server.serve_forever(background=True)
            self._servers.append(server)

    def _server(self, d: SimulatedDevice) -> ModbusBaseServer:
        framer = FramerType.RTU if d.framer == "rtu" else FramerType.SOCKET
        return _TcpServer(d, sim_device(d), address=(self.host, d.port), framer=framer)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start_servers())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
        self._ready.set()
        if self._error is None:
            loop.run_forever()
        loop.run_until_complete(self._shutdown())
        loop.close()

    async def _shutdown(self) -> None:
        for server in self._servers:
            await server.shutdown()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def start(self) -> "ModbusSimulator":
        """Start listening; returns once every server is bound (or raises why not)."""
        from shopfloor.modbus.engine import FDS_RESERVED, ensure_open_files

        # a listening socket and a client's connection per device
        ensure_open_files(2 * len(self.devices) + FDS_RESERVED,
                          f"{len(self.devices)} simulated devices")
        self._thread = threading.Thread(target=self._run, name="modbus-simulator", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            self._thread.join(5)
            raise ShopfloorError(f"simulator could not start: {self._error}")
        return self

    def stop(self) -> None:
        """Stop every server and the background thread."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> "ModbusSimulator":
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------
# The light simulator: many devices for benchmarks, at a fraction of pymodbus' cost.

LIGHT_VALUE_SETS = 16  # distinct value sets the devices share (phases of the sine)
_MBAP = struct.Struct(">HHHB")  # transaction, protocol (0), length, unit id
_READ = struct.Struct(">BHH")  # function code, start address, count


class _LightImage:
    """The registers every light device serves: :data:`LIGHT_VALUE_SETS` value sets of
    the map (device ``i`` serves set ``i % LIGHT_VALUE_SETS``), recomputed at most once a
    second, and the answer bytes of each read asked for, cached until then."""

    def __init__(self, tags: Sequence[TagSpec]):
        self.tags = [t for t in tags if t.register_type in ("holding", "input")]
        self.size = {rt: max((t.end for t in self.tags if t.register_type == rt),
                             default=0) + 16 for rt in ("holding", "input")}
        self._second = -1.0
        self._words: list[dict[str, list[int]]] = []
        self._answers: dict[tuple[int, int, int, int], bytes] = {}

    def _refresh(self, now: float) -> None:
        second = math.floor(now)
        if second == self._second:
            return
        self._second, self._answers = second, {}
        self._words = []
        for s in range(LIGHT_VALUE_SETS):
            words = {rt: [0] * n for rt, n in self.size.items()}
            for tag in self.tags:
                if tag.data_type == "string":
                    words[tag.register_type][tag.address:tag.end] = encode_raw(tag, tag.name)
                elif tag.bit_span is None and not tag.is_bit:
                    words[tag.register_type][tag.address:tag.end] = encode(
                        tag, tag_value(tag, second, 0.7 * s))
            self._words.append(words)

    def answer(self, value_set: int, func_code: int, start: int, count: int) -> bytes:
        """The PDU answering a read (function code, byte count, registers), or a Modbus
        exception PDU (1: not a register read, 2: outside the map)."""
        self._refresh(time.time())
        key = (value_set, func_code, start, count)
        pdu = self._answers.get(key)
        if pdu is None:
            register_type = _FC_TYPE.get(func_code)
            if register_type is None:
                return bytes((func_code | 0x80, 1))
            words = self._words[value_set][register_type]
            if not 1 <= count <= 125 or start + count > len(words):
                return bytes((func_code | 0x80, 2))
            pdu = struct.pack(f">BB{count}H", func_code, 2 * count, *words[start:start + count])
            self._answers[key] = pdu
        return pdu


class _LightProtocol(asyncio.Protocol):
    """One connection of a light device: Modbus TCP frames in, answers out."""

    def __init__(self, image: _LightImage, device: SimulatedDevice, value_set: int):
        self.image, self.device, self.value_set = image, device, value_set
        self.transport: asyncio.Transport | None = None
        self.pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.device.connections += 1

    def data_received(self, data: bytes) -> None:
        data = self.pending + data if self.pending else data
        at, out = 0, []
        while len(data) - at >= 7:
            tid, _proto, length, unit = _MBAP.unpack_from(data, at)
            end = at + 6 + length
            if end > len(data):
                break
            if length >= 6:
                func_code, start, count = _READ.unpack_from(data, at + 7)
                pdu = self.image.answer(self.value_set, func_code, start, count)
            else:
                pdu = bytes((data[at + 7] | 0x80 if length > 1 else 0x80, 1))
            out.append(_MBAP.pack(tid, 0, len(pdu) + 1, unit) + pdu)
            self.device.requests += 1
            at = end
        self.pending = data[at:]
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


class LightModbusSimulator(ModbusSimulator):
    """Serves devices of the same register map with a minimal Modbus TCP server of its
    own (holding and input register reads, function codes 3 and 4) instead of
    pymodbus' server: for benchmarks of the capture that need more devices than
    pymodbus' server answers from one core (about five times fewer). Values are the
    :func:`tag_value` sines, shared by groups of devices and recomputed once a second;
    the only fault is ``refuse``. Coils, bits, quirks, RTU and serial: use
    :class:`ModbusSimulator`."""

    def __init__(self, devices: Sequence[SimulatedDevice], host: str = "127.0.0.1"):
        super().__init__(devices, host)
        unsupported = [d for d in self.devices if d.fault not in ("none", "refuse")
                       or d.framer != "socket" or d.serial_port or d.quirks or d.values]
        if unsupported:
            raise ShopfloorError(f"the light simulator serves plain TCP devices (fault none "
                                 f"or refuse): device on port {unsupported[0].port} is not")
        self._image = _LightImage(self.devices[0].tags if self.devices else [])
        self._listeners: list[asyncio.AbstractServer] = []

    async def _start_servers(self) -> None:
        loop = asyncio.get_running_loop()
        for i, d in enumerate(self.devices):
            if d.fault == "refuse":
                continue
            self._listeners.append(await loop.create_server(
                lambda d=d, i=i: _LightProtocol(self._image, d, i % LIGHT_VALUE_SETS),
                self.host, d.port, backlog=128))

    async def _shutdown(self) -> None:
        for listener in self._listeners:
            listener.close()
        await super()._shutdown()
