"""The async capture engine: every device of a run polled from one event loop.

A run used to poll each device from its own thread (``capture_device``), which capped
a run at 64 devices and spent a thread, a stack and a GIL hand-off per device. Here one
event loop on one thread holds every device: a coroutine per device keeps the device's
connection (pymodbus' ``AsyncModbusTcpClient``), its circuit breaker and its place on the
slot grid, exactly as :func:`~shopfloor.modbus.capture.capture_device` does for one:

- slot ``k`` is polled at ``anchor + k * interval``; a device a whole interval late
  skips the slot (missed), a failing one is skipped by its breaker; a slow or dead
  device only ever waits on its own coroutine, so it never delays the others;
- every poll holds the device's gateway (an asyncio lock per ``host:port`` for the
  devices of this run, the process-wide lock of :mod:`~shopfloor.modbus.gateway` for
  other runs in the process, then the caller's ``then`` gate, e.g. Prefect's global
  concurrency limit, entered on a worker thread because it blocks);
- the workarounds are the same settings with the same meaning (a pause after connect
  and between requests, close after the poll, one request per tag, coils from 0);
- each device connects during the run's start lead, before its first slot (unless it
  closes its connection after every poll), so hundreds of devices do not all connect
  in the instant of slot 0;
- blocking work leaves the loop: each sample's ``on_sample`` (the durable buffer
  commit) runs on one writer thread and is awaited before the device's next slot (a
  slot counts as taken once its commit returned), batch sinks run on a small pool.

Serial devices (one bus, at most a few per port) keep the threaded loop: each runs
``capture_device`` on a thread of its own, awaited like the others, with the one client
of its line (:mod:`~shopfloor.modbus.serial_bus`: the devices of a port share it, their
polls serialised by the line's lock).
"""

import asyncio
import contextvars
import gc
import logging
import resource
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType

from shopfloor.errors import UserError
from shopfloor.modbus.breaker import CircuitBreaker, max_skip_for
from shopfloor.modbus.capture import (
    CaptureStats,
    Sink,
    batch_of,
    batch_slots,
    capture_device,
    flush_every,
)
from shopfloor.modbus.client import (
    _READERS,
    DeviceConfig,
    DeviceError,
    SampleResult,
    device_plan,
)
from shopfloor.modbus.gateway import (
    Gate,
    GatewayBusy,
    SharedGate,
    gateway_key,
    gateway_semaphore,
    local_gate,
)
from shopfloor.modbus.planning import ReadRequest
from shopfloor.modbus.readings import RawSample, decode_batch, sample_time
from shopfloor.modbus.serial_bus import line_client, serial_lines
from shopfloor.modbus.tags import BIT_REGISTER_TYPES

logging.getLogger("pymodbus.logging").setLevel(logging.CRITICAL)

# File descriptors a device may hold (its client socket) plus what the rest of the
# process needs (the buffer, the database pool, Prefect's client, the simulator in tests).
FDS_PER_DEVICE = 1
FDS_RESERVED = 256
# Batch sinks (decode, judge, direct writes) off the loop: one thread, so they take
# the GIL from the loop no more than one thread can.
SINK_THREADS = 1
PROGRESS_SECONDS = 1.0
# Connections a run opens at once: more, started together on one loop, spend their
# timeouts waiting for the loop rather than for the device (measured: 1000 at once on a
# loaded core all timed out at 0.5 s; docs/modbus.md).
CONNECTS_AT_ONCE = 32


@dataclass
class DeviceJob:
    """One device of a run: where its batches go, its counters, its sample hook and the
    gate held (after the gateway lock) around each poll."""

    cfg: DeviceConfig
    sink: Sink
    stats: CaptureStats
    on_sample: Callable[[RawSample], None] | None = None
    then: Gate | None = None  # a blocking gate (Prefect's limit): entered on a thread
    # A slot no read answered goes on too, without payloads: a bad point per tag
    # (``capture_device(no_answer=True)``, docs/tags.md).
    no_answer: bool = False


def ensure_open_files(need: int, what: str) -> int:
    """Make room for ``need`` open files: raise the soft limit towards the hard one if
    needed; returns the soft limit.

    Raises:
        UserError: the hard limit is lower (``what`` says what needed them).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if need <= soft:
        return soft
    if hard != resource.RLIM_INFINITY and need > hard:
        raise UserError(f"{what} need about {need} open files, the process may have {hard} "
                        "(ulimit -n): split them over several processes")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return need


def raise_fd_limit(devices: int) -> int:
    """Room for a connection per device and the rest of the process (see
    :func:`ensure_open_files`)."""
    return ensure_open_files(devices * FDS_PER_DEVICE + FDS_RESERVED, f"{devices} devices")


def make_async_client(cfg: DeviceConfig) -> AsyncModbusTcpClient:
    """The asyncio pymodbus client of a TCP device (not yet connected); pymodbus' own
    retries and reconnects are off: :func:`poll_sample_async` retries with backoff."""
    framer = FramerType.RTU if cfg.transport == "rtu-over-tcp" else FramerType.SOCKET
    return AsyncModbusTcpClient(cfg.host, port=cfg.port, framer=framer,
                                timeout=cfg.timeout_seconds, retries=0, reconnect_delay=0)


async def _connect(client: Any, gate: asyncio.Semaphore | None) -> bool:
    """Open the client's connection, one of at most ``gate``'s many at once (if given)."""
    if gate is None:
        return await client.connect()
    async with gate:
        return await client.connect()


async def read_request_async(client: Any, request: ReadRequest, unit_id: int,
                             pause_after_connect: float = 0.0,
                             connect_gate: asyncio.Semaphore | None = None
                             ) -> list[int] | list[bool]:
    """Words (or bits) of one planned read, connecting first if the client is not
    (the asyncio twin of :func:`~shopfloor.modbus.client.read_request`); ``connect_gate``
    bounds the connections opened at once (see :data:`CONNECTS_AT_ONCE`).

    Raises:
        DeviceError: on a Modbus exception response, a timeout or a broken connection.
    """
    try:
        if not client.connected:
            if not await _connect(client, connect_gate):
                raise DeviceError("connection refused or unreachable", connection=True)
            if pause_after_connect > 0:
                await asyncio.sleep(pause_after_connect)
        reader = getattr(client, _READERS[request.register_type])
        response = await reader(request.address, count=request.count, device_id=unit_id)
    except (TimeoutError, ModbusException, OSError) as exc:
        client.close()  # a late answer would desynchronise the next request
        raise DeviceError(f"no answer: {type(exc).__name__}: {exc}", connection=True) from None
    if response.isError():
        code = getattr(response, "exception_code", "?")
        raise DeviceError(f"modbus exception {code} reading {request.register_type} "
                          f"{request.address}+{request.count}", connection=False)
    if request.register_type in BIT_REGISTER_TYPES:
        return list(response.bits[:request.count])
    return response.registers


async def poll_sample_async(client: Any, plan: Sequence[ReadRequest], cfg: DeviceConfig,
                            deadline: float, clock: Callable[[], float] = time.time,
                            connect_gate: asyncio.Semaphore | None = None) -> SampleResult:
    """Every planned read once, with the retry, deadline and close-after-poll rules of
    :func:`~shopfloor.modbus.client.poll_sample`: a read is retried with backoff while
    the deadline allows; a read that failed for want of a connection ends the sample, a
    Modbus exception only that read. The retries are inlined here rather than in a
    coroutine per read: the engine runs this once per device and slot, and every
    coroutine level is paid again on each wake-up."""
    result = SampleResult()
    pause = cfg.pause_between_requests_seconds
    try:
        for index, request in enumerate(plan):
            attempt = 0
            while True:
                if pause > 0 and result.requests_sent:
                    await asyncio.sleep(pause)
                result.requests_sent += 1
                try:
                    result.payloads[index] = await read_request_async(
                        client, request, cfg.unit_id, cfg.pause_after_connect_seconds,
                        connect_gate)
                    break
                except DeviceError as exc:
                    backoff = cfg.backoff_seconds * 2 ** attempt
                    if (attempt == cfg.retries
                            or clock() + backoff + cfg.timeout_seconds > deadline):
                        result.requests_failed += 1
                        result.errors.append(str(exc))
                        if exc.connection:
                            return result  # no connection: the other reads would fail too
                        break
                    attempt += 1
                    await asyncio.sleep(backoff)
    finally:
        if cfg.close_connection_after_poll:
            client.close()
    return result


class Gateways:
    """The gateway locks of one run's loop: an asyncio lock per key (this run's devices
    queue on it without a thread), then the process-wide lock (other runs). ``limits``
    lets a gateway take more than one poll at a time (a line file's ``concurrency``):
    its lock is then a semaphore of that many."""

    def __init__(self, clock: Callable[[], float] = time.time,
                 limits: Mapping[str, int] | None = None):
        self.clock = clock
        self.limits = dict(limits or {})
        self._locks: dict[str, asyncio.Semaphore] = {}
        self._shared: dict[str, SharedGate] = {}

    def gates(self, key: str) -> tuple[asyncio.Semaphore, SharedGate]:
        """The two gates of gateway ``key``: this run's asyncio lock (or semaphore) and
        the process-wide one (created on first use)."""
        lock = self._locks.get(key)
        if lock is None:
            concurrency = self.limits.get(key, 1)
            lock = self._locks[key] = asyncio.Semaphore(concurrency)
            self._shared[key] = gateway_semaphore(key, concurrency)
        return lock, self._shared[key]

    @asynccontextmanager
    async def hold(self, key: str, deadline: float, then: Gate | None) -> AsyncIterator[None]:
        """Hold gateway ``key`` (and ``then``) for one poll.

        Raises:
            GatewayBusy: not free before ``deadline``.
        """
        lock, shared = self.gates(key)
        if lock.locked():  # another device of this run polls the gateway: queue, bounded
            try:
                await asyncio.wait_for(lock.acquire(), max(0.0, deadline - self.clock()))
            except TimeoutError:
                raise GatewayBusy(f"gateway {key} busy until the sample's deadline") from None
        else:
            await lock.acquire()  # free: no timer, no task (the common case, per slot)
        try:
            if not shared.acquire(blocking=False):  # held by another run in this process
                left = max(0.0, deadline - self.clock())
                if not await asyncio.to_thread(shared.acquire, True, left):
                    raise GatewayBusy(f"gateway {key} busy until the sample's deadline")
            try:
                if then is None:
                    yield
                else:
                    held = then(deadline)
                    await asyncio.to_thread(held.__enter__)
                    try:
                        yield
                    finally:
                        await asyncio.to_thread(held.__exit__, None, None, None)
            finally:
                shared.release()
        finally:
            lock.release()


@dataclass
class LoopHealth:
    """How late the engine's event loop ran: a late loop polls late (a stall longer than
    what is left of a slot turns into failed or missed samples). Measured by a probe
    that wakes every :data:`PROBE_SECONDS`."""

    probes: int = 0
    max_lag: float = 0.0  # seconds the probe woke late, at most
    stalls: int = 0  # probes more than STALL_SECONDS late

    def describe(self) -> str:
        return (f"event loop lag at most {1000 * self.max_lag:.0f} ms, {self.stalls} stalls "
                f"over {1000 * STALL_SECONDS:.0f} ms in {self.probes} probes")


PROBE_SECONDS = 0.1
STALL_SECONDS = 0.25


async def _probe(health: LoopHealth, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(PROBE_SECONDS)
        lag = loop.time() - start - PROBE_SECONDS
        health.probes += 1
        health.max_lag = max(health.max_lag, lag)
        health.stalls += lag > STALL_SECONDS


@dataclass
class _Run:
    samples: int
    interval: float
    anchor: float
    per_batch: int
    clock: Callable[[], float]
    gateways: Gateways
    writer: ThreadPoolExecutor  # on_sample: the buffer commits, in order
    sinks: ThreadPoolExecutor
    health: LoopHealth = field(default_factory=LoopHealth)
    done: int = 0  # slots dealt with (progress)
    connects: asyncio.Semaphore | None = None  # CONNECTS_AT_ONCE, made on the run's loop

    def budget(self, cfg: DeviceConfig) -> float:
        return (self.interval if self.interval > 0
                else cfg.timeout_seconds * (cfg.retries + 1))


def _note(stats: CaptureStats, error: str) -> None:
    stats.last_error = error
    if len(stats.errors) < 20:
        stats.errors.append(error)


async def _off_loop(pool: ThreadPoolExecutor, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` on ``pool``, in the caller's context (a Prefect run's, for its logger
    and settings), awaited."""
    ctx = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(pool, ctx.run, fn, *args)


async def _poll(run: _Run, job: DeviceJob, client: Any, plan: list[ReadRequest],
                deadline: float, breaker: CircuitBreaker, key: str) -> dict[int, Any] | None:
    """One slot's poll under the gateway; the payloads when it answered.

    The common case, a gateway nobody holds (no other device of this run, no other run,
    no Prefect limit to enter), takes both locks directly: no context manager, no task,
    no thread; this runs once per device and slot. Anything else queues through
    :meth:`Gateways.hold`."""
    stats = job.stats
    lock, shared = run.gateways.gates(key)
    if job.then is None and not lock.locked() and shared.acquire(False):
        await lock.acquire()  # free (checked above, nothing awaited since): at once
        try:
            result = await poll_sample_async(client, plan, job.cfg, deadline, run.clock,
                                             run.connects)
        finally:
            shared.release()
            lock.release()
    else:
        try:
            async with run.gateways.hold(key, deadline, job.then):
                result = await poll_sample_async(client, plan, job.cfg, deadline, run.clock,
                                                 run.connects)
        except GatewayBusy as exc:
            stats.samples_missed += 1
            _note(stats, str(exc))
            return None
    stats.requests_sent += result.requests_sent
    stats.requests_failed += result.requests_failed
    if result.errors:
        _note(stats, result.errors[-1])
    payloads = result.payloads
    breaker.record(bool(payloads))
    if not payloads:
        stats.samples_failed += 1
        return None
    stats.samples_ok += 1
    return payloads


async def _preconnect(run: _Run, client: Any, cfg: DeviceConfig) -> None:
    """Open the device's connection before its first slot, while the run's start lead
    lasts: otherwise every device of the run connects in the same instant at slot 0,
    and a plant of hundreds makes its own gateways (or the simulator) miss the first
    answers. Not for devices that get a fresh connection per poll; a failure here is
    silent (the first poll connects again and counts it).

    It first lets every device of the run set up (plan, client), then connects through
    the run's connect gate: a connect's timeout runs from when it starts, and a
    thousand connects started at once behind a thousand set-ups timed out together
    (all of them, on a loaded core), then reconnected together at every slot."""
    await asyncio.sleep(0)
    if cfg.close_connection_after_poll or run.anchor - run.clock() <= 0:
        return
    try:
        if await _connect(client, run.connects) and cfg.pause_after_connect_seconds > 0:
            await asyncio.sleep(cfg.pause_after_connect_seconds)
    except (TimeoutError, ModbusException, OSError):
        client.close()


async def _capture_tcp(run: _Run, job: DeviceJob) -> CaptureStats:
    """One device's slots on the run's grid (the coroutine twin of ``capture_device``).
    A slot a whole interval late is skipped (missed)."""
    cfg, stats = job.cfg, job.stats
    plan = device_plan(cfg)
    stats.planned_requests = len(plan)
    stats.samples_expected += run.samples
    breaker = CircuitBreaker(max_skip=max_skip_for(run.interval))
    client = make_async_client(cfg)
    key, budget = gateway_key(cfg), run.budget(cfg)
    anchor, interval, per_batch, clock = run.anchor, run.interval, run.per_batch, run.clock
    batch: list[RawSample] = []
    this_batch = batch_of(anchor, 0, interval, per_batch)
    try:
        await _preconnect(run, client, cfg)
        for k in range(run.samples):
            due = anchor + k * interval
            if not breaker.allow():
                stats.samples_skipped += 1
            else:
                late = clock() - due
                if late < 0:
                    await asyncio.sleep(-late)
                if late >= 0 and interval > 0 and late >= interval:
                    stats.samples_missed += 1
                else:
                    payloads = await _poll(run, job, client, plan, due + budget, breaker, key)
                    if payloads is not None or job.no_answer:
                        sample = RawSample(sample_time(anchor, k, interval), payloads or {})
                        batch.append(sample)
                        if job.on_sample is not None:
                            await _off_loop(run.writer, job.on_sample, sample)
            run.done += 1
            next_batch = batch_of(anchor, k + 1, interval, per_batch)
            if batch and (k + 1 == run.samples or next_batch != this_batch):
                taken, batch = batch, []
                await _off_loop(run.sinks, lambda t=taken: job.sink(decode_batch(cfg, plan, t)))
            this_batch = next_batch
    finally:
        client.close()
    return stats


async def _capture_serial(run: _Run, job: DeviceJob, client: Any) -> CaptureStats:
    """A serial device on a thread of its own (the threaded loop, see the module doc),
    polling through ``client``, its line's."""
    gate = local_gate(gateway_key(job.cfg), then=job.then)

    def progress(n: int) -> None:
        run.done += n  # one int add: atomic enough for a progress figure

    return await asyncio.to_thread(
        capture_device, job.cfg, run.samples, run.interval, run.anchor, job.sink,
        clock=run.clock, progress=progress, stats=job.stats, gate=gate,
        per_batch=run.per_batch, on_sample=job.on_sample, no_answer=job.no_answer,
        client=client)


async def _report(run: _Run, progress: Callable[[int], None], stop: asyncio.Event) -> None:
    """Hand the slots done to ``progress`` about once a second, on a thread (it may call
    an API), and the rest at the end."""
    told = 0
    while True:
        try:
            await asyncio.wait_for(stop.wait(), PROGRESS_SECONDS)
        except TimeoutError:
            pass
        done = run.done
        if done > told:
            await asyncio.to_thread(progress, done - told)
            told = done
        if stop.is_set():
            return


async def _capture_all(jobs: Sequence[DeviceJob], run: _Run,
                       progress: Callable[[int], None] | None) -> list[CaptureStats]:
    lines = {port: line_client(cfgs)  # refuses a port with two line settings first
             for port, cfgs in serial_lines(j.cfg for j in jobs).items()}
    run.connects = asyncio.Semaphore(CONNECTS_AT_ONCE)
    stop = asyncio.Event()
    reporter = (asyncio.create_task(_report(run, progress, stop))
                if progress is not None else None)
    probe = asyncio.create_task(_probe(run.health, stop))
    try:
        results = await asyncio.gather(
            *[_capture_serial(run, j, lines[j.cfg.serial_port or ""])
              if j.cfg.transport == "serial" else _capture_tcp(run, j)
              for j in jobs], return_exceptions=True)
    finally:
        stop.set()
        if reporter is not None:
            await reporter
        await probe
        for client in lines.values():
            client.close()
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:  # every device finished its batches first; then the first error stops the run
        raise errors[0]
    return [r for r in results if isinstance(r, CaptureStats)]


def capture_devices(
    jobs: Sequence[DeviceJob], samples: int, interval: float, anchor: float,
    progress: Callable[[int], None] | None = None, clock: Callable[[], float] = time.time,
    per_batch: int | None = None, health: LoopHealth | None = None,
    gateway_limits: Mapping[str, int] | None = None,
) -> list[CaptureStats]:
    """Poll every device of ``jobs`` ``samples`` times from ``anchor`` every ``interval``
    seconds, all from one event loop; the devices' counters, in ``jobs`` order.

    The same contract per device as :func:`~shopfloor.modbus.capture.capture_device`
    (batches aligned to the grid, failures counted never raised, ``on_sample`` before
    the next slot, an error it raises stops the capture once every device is done).
    ``progress`` gets the slots dealt with, from a worker thread, about once a second;
    ``health`` (if given) how late the loop ran; ``gateway_limits`` polls at once per
    gateway key (default 1). Runs on a thread of its own when the
    calling thread already runs an event loop.

    The objects alive when it starts are frozen out of the garbage collector
    (``gc.freeze``): a full collection walks every object of the process (Prefect,
    SQLAlchemy, pandas...) with the GIL held, a pause every device's poll would wait
    out; what the run allocates is still collected, and the frozen objects are
    handed back to the collector when the run ends.

    Raises:
        UserError: the process cannot open a connection per device (``ulimit -n``).
    """
    raise_fd_limit(len(jobs))
    if per_batch is None:
        per_batch = flush_every(samples, interval) if interval <= 0 else batch_slots(interval)
    writer = ThreadPoolExecutor(1, thread_name_prefix="capture-buffer")
    sinks = ThreadPoolExecutor(SINK_THREADS, thread_name_prefix="capture-sink")
    run = _Run(samples, interval, anchor, per_batch, clock, Gateways(clock, gateway_limits),
               writer, sinks, health if health is not None else LoopHealth())
    gc.freeze()
    try:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(_capture_all(jobs, run, progress))
        out: list[list[CaptureStats]] = []
        failed: list[BaseException] = []
        ctx = contextvars.copy_context()

        def main() -> None:
            try:
                out.append(ctx.run(asyncio.run, _capture_all(jobs, run, progress)))
            except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
                failed.append(exc)

        thread = threading.Thread(target=main, name="capture-engine")
        thread.start()
        thread.join()
        if failed:
            raise failed[0]
        return out[0]
    finally:
        gc.unfreeze()  # collectable again once the run is over (a worker runs many)
        writer.shutdown()
        sinks.shutdown()
