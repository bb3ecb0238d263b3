"""Store and forward for the Modbus capture: samples into the collector's buffer, and the
forwarders that drain it into the warehouse and the landing, each on its own.

Capture hands each sample, as read (the words of each planned read), to
:class:`BufferSink`, which appends it to the :class:`~shopfloor.buffer.SampleBuffer`
(its slot is taken once that commit returns), with the device's register map; the
forwarders decode them with that map, a batch at a time, exactly as capture would.
A :class:`Forwarder` per sink reads its cursor's pending samples per device, in order,
and writes them with the same :class:`~shopfloor.modbus.sink.ReadingSink` code as a
direct capture: upserts keyed ``(loc_id, capture_dt)`` for the warehouse, objects named
by their first slot for the landing, so a replay after a crash adds nothing (a landed
object is never rewritten with other lines: ``ReadingSink.land``).
"""

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from shopfloor.buffer.store import HEARTBEAT_SECONDS, Record, SampleBuffer
from shopfloor.modbus.batch import Batch, batch_of, epoch_ms
from shopfloor.modbus.capture import CaptureStats, batch_slots, flush_every
from shopfloor.modbus.client import DeviceConfig, device_plan
from shopfloor.modbus.decoding import RequestDecoder
from shopfloor.modbus.planning import ReadRequest
from shopfloor.modbus.readings import RawSample, decode_batch
from shopfloor.modbus.sink import ReadingSink
from shopfloor.modbus.tags import BIT_REGISTER_TYPES, TagSpec
from shopfloor.modbus.window import step_ms

WAREHOUSE, LANDING = "warehouse", "landing"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
READ_LIMIT = 5000  # samples per read of a device's pending samples (one upsert)
IDLE_SECONDS = 0.5  # a forwarder with nothing to do looks again after this
MAX_BACKOFF_SECONDS = 5.0  # a failing sink is tried again at least this often


def sink_name(kind: str, block: str) -> str:
    """A sink's cursor name in the buffer: ``warehouse:<block>`` or ``landing:<block>``."""
    return f"{kind}:{block}"


def config_json(cfg: DeviceConfig) -> str:
    """The device's configuration as the buffer keeps it (how its samples decode)."""
    values = asdict(cfg)
    values["tags"] = [t.model_dump() for t in cfg.tags]
    return json.dumps(values, sort_keys=True)


def config_from_json(text: str) -> DeviceConfig:
    values = json.loads(text)
    if "dstrct_code" in values:  # buffered before the field took the domain's name
        values["district"] = values.pop("dstrct_code")
    values["tags"] = tuple(TagSpec(**t) for t in values["tags"])
    return DeviceConfig(**values)


def group_of(interval: float, samples: int) -> Callable[[int, int], int]:
    """``(capture_ms, k) -> group``: the landing batch a sample belongs to, the same
    grid-aligned batches a direct capture writes (``capture.batch_of``)."""
    if interval <= 0:
        per_batch = flush_every(samples, interval)
        return lambda ms, k: k // per_batch
    step, per_batch = step_ms(interval), batch_slots(interval)
    return lambda ms, k: (ms // step) // per_batch


def encode(plan: Sequence[ReadRequest], payloads: Mapping[int, Sequence[int] | Sequence[bool]]
           ) -> bytes:
    """A sample as read: one byte per planned read (1: it answered), then the words (or
    bits, as 0/1) of the reads that answered, little-endian uint16."""
    present = bytes(1 if i in payloads else 0 for i in range(len(plan)))
    words = [np.asarray(payloads[i], dtype="<u2") for i in range(len(plan)) if i in payloads]
    return present + (np.concatenate(words).tobytes() if words else b"")


def _payloads(plan: Sequence[ReadRequest], body: bytes) -> dict[int, list[int] | list[bool]]:
    n = len(plan)
    words = np.frombuffer(body, dtype="<u2", offset=n).tolist()
    out: dict[int, list[int] | list[bool]] = {}
    at = 0
    for i, request in enumerate(plan):
        if body[i]:
            values = words[at:at + request.count]
            at += request.count
            out[i] = ([bool(v) for v in values] if request.register_type in BIT_REGISTER_TYPES
                      else values)
    if at != len(words):
        raise ValueError(f"sample of {len(words)} words does not fit the register map")
    return out


def decode(cfg: DeviceConfig, plan: Sequence[ReadRequest], records: Sequence[Record]) -> Batch:
    """The batch of buffered ``records`` of ``cfg``: the words decoded with the device's
    map as it was when they were captured (the buffer keeps it), as capture would have."""
    dts = [_EPOCH + timedelta(milliseconds=r.capture_ms) for r in records]
    words = _answered_words(plan, records)
    if words is None:  # some read failed somewhere: sample by sample
        samples = [RawSample(dt, _payloads(plan, r.body)) for dt, r in zip(dts, records,
                                                                          strict=True)]
        return decode_batch(cfg, plan, samples)
    columns: dict[str, object] = {}
    at = 0
    for request in plan:
        block = words[:, at:at + request.count]
        at += request.count
        if request.decoder is None:
            request.decoder = RequestDecoder(request.tags, request.address, request.count)
        payloads: object = block  # plain numbers decode straight from the array
        if request.decoder.others:
            bits = request.register_type in BIT_REGISTER_TYPES
            payloads = [[bool(v) for v in row] for row in block.tolist()] if bits \
                else block.tolist()
        decoded = request.decoder.batch(payloads)  # type: ignore[arg-type]
        columns.update({t.column: decoded[t.name] for t in request.tags})
    return batch_of(cfg, dts, columns, [""] * len(records))


def _answered_words(plan: Sequence[ReadRequest], records: Sequence[Record]
                    ) -> np.ndarray | None:
    """``(samples, words)`` of every read of every record, when all of them answered
    (the common case), cut out of one array; else None."""
    n = len(plan)
    size = n + 2 * sum(r.count for r in plan)
    answered = b"\x01" * n
    if not records or not all(len(r.body) == size and r.body[:n] == answered
                              for r in records):
        return None
    raw = np.frombuffer(b"".join(r.body for r in records), np.uint8).reshape(-1, size)
    return np.ascontiguousarray(raw[:, n:]).view("<u2")


@dataclass
class BufferSink:
    """Store and forward in the capture loop. :meth:`take` commits each sample, as read,
    to the buffer (its slot is taken when that returns); called with a decoded batch,
    it judges it and counts valid and quarantined readings (the forwarders write them).
    """

    cfg: DeviceConfig
    stats: CaptureStats
    run_id: str
    buffer: SampleBuffer
    group: Callable[[int, int], int]
    taken: int = 0
    dropped: int = 0

    def __post_init__(self) -> None:
        self.plan = device_plan(self.cfg)
        self.judge = ReadingSink(self.cfg, self.stats, self.run_id).judge

    def take(self, sample: RawSample) -> None:
        ms = epoch_ms(sample.capture_dt)
        row = (ms, self.group(ms, self.taken), encode(self.plan, sample.payloads), None)
        self.dropped += self.buffer.append(self.cfg.name, self.run_id, [row])
        self.taken += 1
        self.stats.samples_buffered += 1

    def __call__(self, batch: Batch) -> None:
        judged = self.judge(batch)
        self.stats.rows_valid += int(judged.keep.sum())
        self.stats.rows_quarantined += len(judged.quarantined)


@dataclass
class ForwardStats:
    """What one sink's forwarder did in a run."""

    sink: str
    forwarded: int = 0
    objects: int = 0
    errors: int = 0
    last_error: str = ""


def _segments(records: Sequence[Record], landing: bool = True) -> list[list[Record]]:
    """Consecutive records of one landing batch (same run, group and configuration);
    for the warehouse, of one configuration only."""
    def key(r: Record) -> tuple:
        return (r.run, r.grp, r.cfg) if landing else (r.cfg,)

    out: list[list[Record]] = []
    for r in records:
        if out and key(out[-1][-1]) == key(r):
            out[-1].append(r)
        else:
            out.append([r])
    return out


@dataclass
class Forwarder:
    """Forwards one sink's pending samples, device by device, in buffer order.

    ``reader(cfg)`` gives the :class:`ReadingSink` that writes a device's samples to the
    sink (the run's own for its devices, so their stats count what was forwarded).
    A sink error propagates out of :meth:`forward_once`; nothing after the last
    committed cursor move counts as forwarded, so the next call repeats it (keyed,
    so a repeat overwrites).
    """

    kind: str
    name: str
    buffer: SampleBuffer
    reader: Callable[[DeviceConfig], ReadingSink]
    # Fault injection (tests/crash): called with ``after_forward`` once a part is written
    # to the sink and before the cursor moves past it; normally nothing.
    fault: Callable[[str], None] = field(default=lambda step: None, repr=False)
    stats: ForwardStats = field(init=False)
    _readers: dict[tuple[str, int], ReadingSink] = field(default_factory=dict, init=False)
    _plans: dict[tuple[str, int], list[ReadRequest]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.stats = ForwardStats(self.name)

    def _reader(self, device: str, cfg_id: int) -> tuple[ReadingSink, list[ReadRequest]]:
        """The sink writer and read plan of ``device`` under configuration ``cfg_id``."""
        key = (device, cfg_id)
        if key not in self._readers:
            cfg = config_from_json(self.buffer.config(cfg_id))
            self._readers[key] = self.reader(cfg)
            self._plans[key] = device_plan(cfg)
        return self._readers[key], self._plans[key]

    def forward_once(self) -> int:
        """Forward what is pending for every device of this sink; samples forwarded."""
        return sum(self._device(d) for d in self.buffer.sink_devices(self.name))

    def _device(self, device: str) -> int:
        done = 0
        while True:
            records = self.buffer.pending(self.name, device, READ_LIMIT)
            if not records:
                return done
            ready = self._ready(device, records)
            for part in ready:
                sink, plan = self._reader(device, part[0].cfg)
                batch = decode(sink.cfg, plan, part)
                judged = sink.judge(batch)
                if self.kind == WAREHOUSE:
                    sink.store(batch, judged, count_quarantined=False)
                else:
                    self.stats.objects += sink.land(batch, judged)
                self.fault("after_forward")
                self.buffer.advance(self.name, device, part[-1].seq)
                self.stats.forwarded += len(part)
                done += len(part)
            if len(records) < READ_LIMIT or not ready:
                return done

    def _ready(self, device: str, records: list[Record]) -> list[list[Record]]:
        """What may go now: the warehouse takes everything (rows are keyed); the landing
        takes whole batches only, so an object is written once with all its samples:
        the last batch waits while its run may still add to it (not ended, heartbeat
        recent)."""
        if self.kind == WAREHOUSE:
            return _segments(records, landing=False)
        parts = _segments(records)
        last = parts[-1]
        still_open = (self.buffer.run_open(last[0].run)
                      or (len(records) == READ_LIMIT and len(parts) > 1))
        return parts[:-1] if still_open else parts


class ForwardLoop:
    """A thread that runs a forwarder until stopped: at once while a backlog drains,
    every :data:`IDLE_SECONDS` otherwise, backing off to :data:`MAX_BACKOFF_SECONDS` while its
    sink fails. Errors are counted and kept, never raised: the capture goes on."""

    def __init__(self, forwarder: Forwarder, on_error: Callable[[str], None] | None = None,
                 after_pass: Callable[[], None] | None = None):
        self.forwarder = forwarder
        self.on_error = on_error
        # Called after every pass, failed or not, by the loop and by a drain (the
        # backlog report); it must return at once, and what it raises is ignored.
        self.after_pass = after_pass
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"forward-{forwarder.name}",
                                        daemon=True)
        self._lock = threading.Lock()  # one forward_once at a time (loop or drain)

    def start(self) -> "ForwardLoop":
        self._thread.start()
        return self

    def _attempt(self) -> int | None:
        """One pass, then ``after_pass``; None when the sink failed."""
        try:
            return self._pass()
        finally:
            if self.after_pass is not None:
                try:
                    self.after_pass()
                except Exception:  # noqa: BLE001, S110 - a report never stops forwarding
                    pass

    def _pass(self) -> int | None:
        with self._lock:
            try:
                return self.forwarder.forward_once()
            except Exception as exc:  # any sink error: counted, retried later
                s = self.forwarder.stats
                s.errors += 1
                s.last_error = f"{type(exc).__name__}: {exc}"[:500]
                if self.on_error is not None and s.errors == 1:
                    self.on_error(s.last_error)
                return None

    def _run(self) -> None:
        delay = IDLE_SECONDS
        while not self._stop.is_set():
            n = self._attempt()
            if n is None:
                delay = min(max(delay * 2, IDLE_SECONDS), MAX_BACKOFF_SECONDS)
            else:
                # Again at once only while a backlog drains (a full read); live samples
                # are taken every IDLE_SECONDS, hundreds per transaction instead of one.
                delay = 0.0 if n >= READ_LIMIT else IDLE_SECONDS
            self._stop.wait(delay)

    def stop(self) -> None:
        """Stop the thread (after its current pass)."""
        self._stop.set()
        self._thread.join()

    def drain(self, seconds: float, own_run: str | None = None,
              clock: Callable[[], float] = time.monotonic) -> bool:
        """Forward until nothing is pending or ``seconds`` have passed (retrying a
        failing sink); True when the sink's backlog is empty. With ``own_run`` (a run
        that ends), samples of another live run (an overlapping one) are not waited
        for; those of a run that stopped beating (killed) are."""
        deadline = clock() + seconds
        buffer, name = self.forwarder.buffer, self.forwarder.name
        while True:
            n = self._attempt()
            if own_run is None:
                if buffer.backlog(name).samples == 0:
                    return True
            elif buffer.left_behind(name, own_run) == (0, 0):
                return True
            left = deadline - clock()
            if left <= 0:
                return False
            if n is None or n == 0:
                time.sleep(min(IDLE_SECONDS, left))


class Heartbeat:
    """Tells the buffer every :data:`HEARTBEAT_SECONDS` that ``run``'s process is alive,
    so its open landing batches wait for it (and close soon after it is gone)."""

    def __init__(self, buffer: SampleBuffer, run: str, every: float = HEARTBEAT_SECONDS):
        self._stop = threading.Event()
        buffer.start_run(run)

        def beat() -> None:
            while not self._stop.wait(every):
                try:
                    buffer.heartbeat(run)
                except Exception:  # noqa: BLE001, S110 - a busy file: the next beat tries again
                    pass

        threading.Thread(target=beat, name="buffer-heartbeat", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


def backlog_message(buffered: int, forwarded: dict[str, int], backlog: dict[str, int],
                    dropped: int = 0) -> str:
    """``buffered 36, forwarded 2 to warehouse:db, backlog 34 for warehouse:db`` (a
    backlog per sink that has one; ``dropped N by the buffer's limits`` when N > 0)."""
    parts = [f"buffered {buffered}"]
    parts += [f"forwarded {forwarded[s]} to {s}" for s in forwarded]
    parts += [f"backlog {n} for {s}" for s, n in backlog.items() if n]
    if dropped:
        parts.append(f"dropped {dropped} by the buffer's limits")
    return ", ".join(parts)
