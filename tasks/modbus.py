"""Tasks of the modbus-capture flow: resolve device blocks, capture one device."""

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from prefect import get_run_logger, task
from prefect.artifacts import update_progress_artifact

from blocks.modbus import ModbusDevice
from blocks.resolve import load_block
from shopfloor.buffer.store import SampleBuffer
from shopfloor.modbus.buffered import BufferSink, group_of
from shopfloor.modbus.capture import CaptureStats, capture_device, device_plan
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.gateway import (
    Gate,
    GatewayBusy,
    gateway_key,
    gateway_limit_name,
    local_gate,
)
from shopfloor.modbus.sink import ReadingSink
from tasks import runtime
from tasks.runtime import LIVE

# A global concurrency limit acquire is two API calls (acquire with a lease, release)
# and a lease renewer: about 15-35 ms of CPU each against a local server. Worth it at
# one sample a second or slower; faster captures hold only the in-process lock.
MIN_GCL_INTERVAL = 1.0


def _prefect_gate(name: str) -> Gate:
    """Hold a slot of the global concurrency limit ``name`` for one poll."""
    warned: list[bool] = []

    @contextmanager
    def hold(deadline: float) -> Iterator[None]:
        with ExitStack() as stack:
            timeout = deadline - time.time()
            if timeout <= 0:
                raise GatewayBusy(f"no time left to acquire limit {name}")
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


def gateway_gate(cfg: DeviceConfig, interval_seconds: float) -> Gate:
    """The in-process lock of the device's gateway, plus its Prefect global concurrency
    limit ``modbus-gateway-<host>-<port>`` when it exists, the run is a flow run and
    samples are at least :data:`MIN_GCL_INTERVAL` apart."""
    key = gateway_key(cfg)
    if cfg.transport == "serial" or interval_seconds < MIN_GCL_INTERVAL \
            or runtime.run_id() is None:
        return local_gate(key)
    name = gateway_limit_name(cfg.host, cfg.port)
    # Asked once per device and run, so a plant without the limit pays no API call per
    # sample (and Prefect's "limit does not exist" warning is not logged every sample).
    if runtime.limit_slots(name) is None:
        return local_gate(key)
    get_run_logger().info("device %s: each poll holds global concurrency limit %s",
                          cfg.name, name)
    return local_gate(key, then=_prefect_gate(name))


class Progress:
    """A progress artifact shared by the device tasks (threads); updated at most 1/s."""

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


@task(name="resolve-modbus-device", **LIVE)
def resolve_device(name: str) -> DeviceConfig:
    """Load the ``ModbusDevice`` block ``name`` and plan its reads (no connection yet).

    Args:
        name: ModbusDevice block name.
    """
    cfg = load_block(name, ModbusDevice).to_config(name)
    plan = device_plan(cfg)
    get_run_logger().info("device %s: %d tags in %d planned reads (%s:%s, %s, unit %d)",
                          name, len(cfg.tags), len(plan), cfg.host, cfg.port, cfg.transport,
                          cfg.unit_id)
    return cfg


@task(name="capture-modbus-device", **LIVE)
def capture_device_task(
    cfg: DeviceConfig, samples: int, interval_seconds: float, anchor: float, run_id: str,
    target_db: str | None, raw_logs: str | None, progress: Progress | None = None,
    missed_at_start: int = 0, buffer: SampleBuffer | None = None,
    stats: CaptureStats | None = None,
) -> CaptureStats:
    """Poll one device on the shared schedule; validate, upsert, quarantine, land JSON.

    With a ``buffer`` (store and forward) every sample is judged and committed to the
    collector's buffer as it is taken; the flow's forwarders write the warehouse and
    the landing from there, so neither is waited on here.

    Args:
        cfg: the device, from :func:`resolve_device`.
        samples: slots to take, from ``anchor``.
        interval_seconds: seconds between samples.
        anchor: epoch seconds of the first slot.
        run_id: flow run id, for quarantine rows and landed object names.
        target_db: SqlAlchemyConnector block for ``temperature_raw``; None: no DB write.
        raw_logs: storage block for landed JSON; None: no landing.
        progress: shared progress reporter.
        missed_at_start: slots of the run's window already past when it started
            (counted as missed and expected).
        buffer: the collector's buffer; None: write the sinks directly.
        stats: the device's counters, shared with the flow's forwarders.
    """
    logger = get_run_logger()
    stats = stats if stats is not None else CaptureStats(cfg.name)
    stats.samples_missed += missed_at_start
    stats.samples_expected += missed_at_start
    on_sample = None
    sink: ReadingSink | BufferSink
    if buffer is not None:
        # One commit per sample: a slot counts as taken once it is in the buffer.
        sink = BufferSink(cfg, stats, run_id, buffer, group_of(interval_seconds, samples))
        on_sample = sink.take
    else:
        sink = ReadingSink(
            cfg, stats, run_id,
            engine=runtime.engine(target_db) if target_db else None,
            tables=runtime.tables() if target_db else None,
            storage=runtime.storage(raw_logs) if raw_logs else None,
        )
    result = capture_device(cfg, samples, interval_seconds, anchor, sink, progress=progress,
                            stats=stats, gate=gateway_gate(cfg, interval_seconds),
                            on_sample=on_sample, no_answer=True)
    trouble = result.samples_failed or result.samples_missed or result.samples_skipped
    (logger.warning if trouble else logger.info)(
        "device %s: %d ok, %d failed, %d missed, %d skipped (breaker) samples; %d requests "
        "sent; %d rows written, %d quarantined; last error: %s", cfg.name, result.samples_ok,
        result.samples_failed, result.samples_missed, result.samples_skipped,
        result.requests_sent, result.rows_written, result.rows_quarantined,
        result.last_error or "-")
    return result
