"""Tasks of the modbus-capture flow: resolve device blocks, capture one device."""

import threading
import time

from prefect import get_run_logger, task
from prefect.artifacts import update_progress_artifact
from prefect.cache_policies import NO_CACHE

from blocks.modbus import ModbusDevice
from blocks.resolve import load_block, load_engine, load_storage
from shopfloor.db.schema import configured_tables
from shopfloor.modbus.capture import CaptureStats, capture_device, device_plan
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.sink import ReadingSink


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


@task(name="resolve-modbus-device", cache_policy=NO_CACHE)
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


@task(name="capture-modbus-device", cache_policy=NO_CACHE)
def capture_device_task(
    cfg: DeviceConfig, samples: int, interval_seconds: float, anchor: float, run_id: str,
    target_db: str | None, raw_logs: str | None, progress: Progress | None = None,
) -> CaptureStats:
    """Poll one device on the shared schedule; validate, upsert, quarantine, land JSON.

    Args:
        cfg: the device, from :func:`resolve_device`.
        samples: samples to take.
        interval_seconds: seconds between samples.
        anchor: epoch seconds of sample 0.
        run_id: flow run id, for quarantine rows and landed object names.
        target_db: SqlAlchemyConnector block for ``temperature_raw``; None: no DB write.
        raw_logs: storage block for landed JSON; None: no landing.
        progress: shared progress reporter.
    """
    logger = get_run_logger()
    stats = CaptureStats(cfg.name)
    sink = ReadingSink(
        cfg, stats, run_id,
        engine=load_engine(target_db) if target_db else None,
        tables=configured_tables() if target_db else None,
        storage=load_storage(raw_logs) if raw_logs else None,
    )
    result = capture_device(cfg, samples, interval_seconds, anchor, sink, progress=progress,
                            stats=stats)
    level = logger.warning if result.samples_failed or result.samples_missed else logger.info
    level("device %s: %d ok, %d failed, %d missed samples; %d requests sent; %d rows written, "
          "%d quarantined; last error: %s", cfg.name, result.samples_ok, result.samples_failed,
          result.samples_missed, result.requests_sent, result.rows_written,
          result.rows_quarantined, result.last_error or "-")
    return result
