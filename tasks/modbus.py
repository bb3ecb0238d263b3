"""Tasks of the modbus-capture flow: resolve device blocks, capture the run's devices."""

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager

from prefect import get_run_logger, task
from prefect.artifacts import update_progress_artifact

from blocks.modbus import ModbusDevice
from blocks.resolve import load_block
from shopfloor.buffer.store import SampleBuffer
from shopfloor.modbus.buffered import BufferSink, group_of
from shopfloor.modbus.capture import CaptureStats, device_plan
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.engine import DeviceJob, LoopHealth, capture_devices
from shopfloor.modbus.gateway import (
    Gate,
    GatewayBusy,
    gateway_limit_name,
)
from shopfloor.modbus.line import Line, load_line, record_run
from shopfloor.modbus.readings import RawSample
from shopfloor.modbus.sink import ReadingSink
from tasks import runtime
from tasks.runtime import LIVE

# A global concurrency limit acquire is two API calls (acquire with a lease, release)
# and a lease renewer: about 15-35 ms of CPU each against a local server. Worth it at
# one sample a second or slower; faster captures hold only the in-process lock.
MIN_GCL_INTERVAL = 1.0
# Devices whose lines are logged one by one; beyond, only the troubled ones and totals.
LOG_EVERY_DEVICE = 64


def _prefect_gate(name: str) -> Gate:
    """Hold a slot of the global concurrency limit ``name`` for one poll."""
    warned: list[bool] = []

    @contextmanager
    def hold(deadline: float) -> Iterator[None]:
        with ExitStack() as stack:
            timeout = deadline - time.time()
            if timeout <= 0:
                raise GatewayBusy(f"limit {name} busy: no time left before the sample's deadline")
            try:
                stack.enter_context(runtime.slot(name, timeout_seconds=timeout))
            except TimeoutError:
                raise GatewayBusy(f"limit {name} busy until the sample's deadline") from None
            except Exception as exc:  # the API failed: poll anyway, the local lock holds
                if not warned:
                    warned.append(True)
                    get_run_logger().warning("limit %s could not be acquired (%s): polling "
                                             "with the in-process lock only", name, exc)
            yield

    return hold


def gateway_limit(cfg: DeviceConfig, interval_seconds: float,
                  known: dict[str, bool] | None = None) -> Gate | None:
    """The device's Prefect global concurrency limit ``modbus-gateway-<host>-<port>`` as
    a gate, when it exists, the run is a flow run and samples are at least
    :data:`MIN_GCL_INTERVAL` apart; else None. ``known`` caches which limits exist
    (a run of many devices behind one gateway asks once)."""
    if cfg.transport == "serial" or interval_seconds < MIN_GCL_INTERVAL \
            or runtime.run_id() is None:
        return None
    name = gateway_limit_name(cfg.host, cfg.port)
    # Asked once per gateway and run, so a plant without the limit pays no API call per
    # sample (and Prefect's "limit does not exist" warning is not logged every sample).
    known = {} if known is None else known
    if name not in known:
        known[name] = runtime.limit_slots(name) is not None
    if not known[name]:
        return None
    get_run_logger().info("device %s: each poll holds global concurrency limit %s",
                          cfg.name, name)
    return _prefect_gate(name)


class Progress:
    """A progress artifact shared by the run's devices; updated at most 1/s."""

    def __init__(self, artifact_id: object, total: int):
        self.artifact_id = artifact_id
        self.total = max(total, 1)
        self.done = 0
        self._lock = threading.Lock()
        self._last = 0.0

    def __call__(self, n: int) -> None:
        with self._lock:
            self.done += n
            now = time.monotonic()
            if self.done < self.total and now - self._last < 1.0:
                return
            self._last = now
            percent = 100.0 * self.done / self.total
        if self.artifact_id is not None:
            update_progress_artifact(self.artifact_id, percent)


# Block loads in flight while resolving a run's devices (each is an API round trip).
RESOLVE_THREADS = 8


@task(name="resolve-modbus-devices", **LIVE)
def resolve_devices(names: list[str]) -> list[DeviceConfig]:
    """Load the ``ModbusDevice`` blocks ``names`` (a few at a time) and plan their reads;
    one task for the whole run, so hundreds of devices do not make hundreds of task runs.

    Args:
        names: ModbusDevice block names.
    """
    def one(name: str) -> DeviceConfig:
        cfg = load_block(name, ModbusDevice).to_config(name)
        device_plan(cfg)  # a tag that cannot fit fails here, naming it
        return cfg

    ctx = contextvars.copy_context()  # the run's settings and client, in every thread
    with ThreadPoolExecutor(RESOLVE_THREADS, thread_name_prefix="resolve-device") as pool:
        configs = list(pool.map(lambda name: ctx.copy().run(one, name), names))
    logger = get_run_logger()
    for cfg in configs[:LOG_EVERY_DEVICE]:
        logger.info("device %s: %d tags in %d planned reads (%s:%s, %s, unit %d)", cfg.name,
                    len(cfg.tags), len(device_plan(cfg)), cfg.host, cfg.port, cfg.transport,
                    cfg.unit_id)
    if len(configs) > LOG_EVERY_DEVICE:
        logger.info("... and %d more devices", len(configs) - LOG_EVERY_DEVICE)
    return configs


@task(name="load-modbus-line", **LIVE)
def load_line_task(line_file: str) -> Line:
    """Read the line file (it is read at the start of every run: an edit is picked up
    by the next one); log its content hash and what changed since the last run here.

    Args:
        line_file: path of the line file (docs/modbus.md, "Line file").
    """
    line = load_line(line_file)
    changes = record_run(line_file, line)
    get_run_logger().info("line file %s: sha256 %s, %d devices, %d gateways; %s",
                          line_file, line.digest[:16], len(line.devices),
                          len(line.gateways), changes.describe())
    return line


def _sink(cfg: DeviceConfig, stats: CaptureStats, run_id: str, target_db: str | None,
          raw_logs: str | None, buffer: SampleBuffer | None, interval_seconds: float,
          samples: int) -> tuple[ReadingSink | BufferSink, Callable[[RawSample], None] | None]:
    """The device's batch sink and per-sample hook: the buffer (store and forward, one
    commit per sample) or the warehouse and landing directly."""
    if buffer is not None:
        sink = BufferSink(cfg, stats, run_id, buffer, group_of(interval_seconds, samples))
        return sink, sink.take
    return ReadingSink(
        cfg, stats, run_id,
        engine=runtime.engine(target_db) if target_db else None,
        tables=runtime.tables() if target_db else None,
        storage=runtime.storage(raw_logs) if raw_logs else None,
    ), None


def _log_device(result: CaptureStats) -> None:
    trouble = result.samples_failed or result.samples_missed or result.samples_skipped
    (get_run_logger().warning if trouble else get_run_logger().info)(
        "device %s: %d ok, %d failed, %d missed, %d skipped (breaker) samples; %d requests "
        "sent; %d rows written, %d quarantined; last error: %s", result.device,
        result.samples_ok, result.samples_failed, result.samples_missed,
        result.samples_skipped, result.requests_sent, result.rows_written,
        result.rows_quarantined, result.last_error or "-")


@task(name="capture-modbus-devices", **LIVE)
def capture_devices_task(
    configs: list[DeviceConfig], samples: int, interval_seconds: float, anchor: float,
    run_id: str, target_db: str | None, raw_logs: str | None,
    progress: Progress | None = None, missed_at_start: int = 0,
    buffer: SampleBuffer | None = None, stats: dict[str, CaptureStats] | None = None,
    gateway_limits: dict[str, int] | None = None,
) -> list[CaptureStats]:
    """Poll every device of the run on the shared schedule from one event loop
    (:func:`shopfloor.modbus.engine.capture_devices`); validate, upsert, quarantine,
    land JSON, or commit each sample to the collector's buffer (store and forward).

    Args:
        configs: the devices, from :func:`resolve_device`.
        samples: slots to take, from ``anchor``.
        interval_seconds: seconds between samples.
        anchor: epoch seconds of the first slot.
        run_id: flow run id, for quarantine rows and landed object names.
        target_db: SqlAlchemyConnector block for ``temperature_raw``; None: no DB write.
        raw_logs: storage block for landed JSON; None: no landing.
        progress: shared progress reporter.
        missed_at_start: slots of the run's window already past when it started
            (counted as missed and expected, per device).
        buffer: the collector's buffer; None: write the sinks directly.
        stats: the devices' counters by name, shared with the flow's forwarders.
        gateway_limits: polls at once per gateway key (a line file's ``gateways:``).
    """
    stats = stats if stats is not None else {}
    known: dict[str, bool] = {}
    if len(configs) > 1 and interval_seconds >= MIN_GCL_INTERVAL and runtime.run_id():
        # one listing instead of a lookup per gateway (hundreds of API calls at start)
        active = runtime.active_limits("modbus-gateway-")
        known = {gateway_limit_name(c.host, c.port): gateway_limit_name(c.host, c.port)
                 in active for c in configs if c.transport != "serial"}
    jobs = []
    for cfg in configs:
        s = stats.setdefault(cfg.name, CaptureStats(cfg.name))
        s.samples_missed += missed_at_start
        s.samples_expected += missed_at_start
        sink, on_sample = _sink(cfg, s, run_id, target_db, raw_logs, buffer,
                                interval_seconds, samples)
        jobs.append(DeviceJob(cfg, sink, s, on_sample,
                              gateway_limit(cfg, interval_seconds, known), no_answer=True))
    health = LoopHealth()
    results = capture_devices(jobs, samples, interval_seconds, anchor, progress=progress,
                              health=health, gateway_limits=gateway_limits)
    for result in results:
        trouble = result.samples_failed or result.samples_missed or result.samples_skipped
        if len(results) <= LOG_EVERY_DEVICE or trouble:
            _log_device(result)
    get_run_logger().info("%d devices: %d samples ok, %d failed, %d missed, %d skipped; %s",
                          len(results), sum(r.samples_ok for r in results),
                          sum(r.samples_failed for r in results),
                          sum(r.samples_missed for r in results),
                          sum(r.samples_skipped for r in results), health.describe())
    return results
