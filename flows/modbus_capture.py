"""The ``modbus-capture`` flow: poll ModbusDevice blocks concurrently, validate, store."""

import re
import time
import uuid
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, create_table_artifact
from prefect.context import FlowRunContext
from prefect.runtime import deployment, flow_run
from prefect.states import Completed, State
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from blocks.resolve import load_block, load_engine
from shopfloor.db.engine import check_connection
from shopfloor.errors import ShopfloorError, UserError
from shopfloor.modbus.capture import (
    CaptureStats,
    Verdict,
    check_distinct_locations,
    check_parameters,
    schedule_anchor,
    verdict,
)
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.window import plan_window, span_window_start
from shopfloor.params import BlockName
from tasks.forwarding import StoreAndForward, close_store, open_store, report
from tasks.modbus import Progress, capture_device_task, resolve_device
from tasks.outcomes import ON_FAILURE, degraded, emit

MAX_DEVICES = 64  # one polling thread per device
START_LEAD_SECONDS = 2.0
# A scheduled run samples [scheduled + offset, scheduled + offset + span): the offset
# gives the worker time to start the run (process or container) before its first
# slot. The next run, scheduled one span later, starts its window where this one ends.
# ``shopfloor worker`` also starts runs 30 s before their scheduled time (prefetch):
# the soak measured 33 s from submission to the first sample on 2 cores with four
# other runs starting in the same minute.
SCHEDULED_OFFSET_SECONDS = 30.0
# The flow's timeout: an hour's span (the prefect.yaml deployment), its start offset,
# and room for the last batch's writes. A longer plain call needs
# ``modbus_capture.with_options(timeout_seconds=...)``; check_parameters refuses a run
# that could not finish inside the timeout of the flow being run.
TIMEOUT_SECONDS = 3600 + 600
TIMEOUT_MARGIN_SECONDS = 120.0

# The limits a parameter's type can carry: the server refuses a run that breaks them
# before it exists, and the UI form shows them. The rest is in check_parameters.
DeviceNames = Annotated[list[BlockName], Field(min_length=1, max_length=MAX_DEVICES)]
Samples = Annotated[int, Field(ge=1)]
IntervalSeconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
SpanSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
OffsetSeconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


def _artifact_key(device: str) -> str:
    return "modbus-capture-" + re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")


def _publish(stats: list[CaptureStats]) -> None:
    rows = [s.as_row() for s in stats]
    for row in rows:
        create_table_artifact(table=[row], key=_artifact_key(str(row["device"])),
                              description=f"Modbus capture of device {row['device']}")
    create_table_artifact(table=rows, key="modbus-capture",
                          description="Modbus capture: one line per device")


def _emit_events(configs: list[DeviceConfig], stats: list[CaptureStats]) -> None:
    """``shopfloor.capture.completed`` for a device with a valid reading, else
    ``shopfloor.device.dead`` (the freshness automations watch the first)."""
    for cfg, s in zip(configs, stats, strict=True):
        payload = {"samples_ok": s.samples_ok, "samples_expected": s.samples_expected,
                   "rows_written": s.rows_written, "rows_quarantined": s.rows_quarantined}
        labels = {"shopfloor.district": cfg.district} if cfg.district else {}
        if s.rows_valid:
            emit("shopfloor.capture.completed", f"shopfloor.device.{cfg.name}", payload,
                 **labels)
        else:
            emit("shopfloor.device.dead", f"shopfloor.device.{cfg.name}",
                 {**payload, "last_error": s.last_error}, **labels)


def _timeout_limit() -> float | None:
    """Seconds a run may sample: the running flow's timeout (with_options may change
    it) less a margin for the last writes."""
    ctx = FlowRunContext.get()
    timeout = ctx.flow.timeout_seconds if ctx is not None else TIMEOUT_SECONDS
    return None if not timeout else timeout - TIMEOUT_MARGIN_SECONDS


def _check_landing(configs: list[DeviceConfig]) -> None:
    missing = [c.name for c in configs if not c.district]
    if missing:
        raise UserError(
            f"land_json needs a district on every device, missing on {', '.join(missing)}: "
            "landed keys start with dstrct_code=<code>/ so registration finds the district "
            "(shopfloor modbus add-device NAME --district CODE ...)")


def _schedule(samples: int, interval: float, span: float | None, offset: float | None,
              now: float) -> tuple[float, int, int]:
    """(first slot, slots to take, slots missed at the start) of this run at ``now``."""
    if span is None:  # a number of samples from now, on the interval grid
        return schedule_anchor(interval, now=now + START_LEAD_SECONDS), samples, 0
    if deployment.get_id() is not None:  # scheduled (or started) from a deployment
        scheduled = flow_run.get_scheduled_start_time().timestamp()
        start = span_window_start(scheduled, span,
                                  SCHEDULED_OFFSET_SECONDS if offset is None else offset)
    else:  # a plain call: the window starts now
        start = now + START_LEAD_SECONDS + (offset or 0.0)
    window = plan_window(start, span, interval, now=now, lead=START_LEAD_SECONDS)
    if window.remaining == 0:
        raise ShopfloorError(
            f"the run started after its window ({window.slots} slots from "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(window.first))} UTC) had "
            "passed: the window is lost (no sample taken)")
    return window.start, window.remaining, window.skip


@flow(name="modbus-capture", task_runner=ThreadPoolTaskRunner(max_workers=MAX_DEVICES),
      timeout_seconds=TIMEOUT_SECONDS, on_failure=ON_FAILURE)
def modbus_capture(
    devices: DeviceNames,
    samples: Samples = 1,
    interval_seconds: IntervalSeconds = 5.0,
    write_raw: bool = True,
    land_json: bool = False,
    target_db: BlockName = "shopfloor-warehouse-db",
    raw_logs: BlockName = "shopfloor-raw-logs",
    span_seconds: SpanSeconds | None = None,
    start_offset_seconds: OffsetSeconds | None = None,
    store_and_forward: bool = True,
) -> list[dict[str, object]] | State:
    """Poll Modbus devices concurrently; write validated readings, quarantine bad ones.

    Each device is polled on the same grid (sample slots at multiples of the interval)
    in its own thread, so a dead or slow device never delays the others. Failed reads
    are retried with backoff within the sample; a device that keeps failing is skipped
    for a growing number of slots and probed again; devices behind one gateway
    (``host:port``) are polled one at a time.

    Two ways to say what to sample:

    - ``samples``: that many slots from now (a plain call, ``shopfloor modbus capture``);
    - ``span_seconds``: every slot of the run's window ``[S + offset, S + offset + span)``
      where ``S`` is the time the run was scheduled for; a cron every ``span`` then
      samples without gaps or overlaps. A run started late begins at the first slot
      still ahead; a run whose whole window has passed fails (a lost window).

    Args:
        devices: ModbusDevice block names to poll (1 to 64, each once).
        samples: how many samples to take per device (>= 1; leave at 1 with span_seconds).
        interval_seconds: seconds between samples (>= 0; > 0 when samples > 1 or with
            span_seconds).
        write_raw: upsert valid readings into temperature_raw and bad ones into quarantine.
        land_json: also write valid readings as JSON lines to the raw_logs storage, under
            ``dstrct_code=<code>/<device>/<YYYYMMDDHH>/`` (devices need a district).
        target_db: SqlAlchemyConnector block of the database to write to.
        raw_logs: S3Bucket or LocalFileSystem block where JSON telemetry lands.
        span_seconds: sample every slot of a window this long (a scheduled deployment).
        start_offset_seconds: where the window starts after the scheduled time (default
            30 s for a deployment run, 0 for a plain call, which starts now).
        store_and_forward: commit every sample to the collector's local buffer
            (``$SHOPFLOOR_HOME/buffer/<collector>.sqlite3``) and forward it to the
            warehouse and the landing from there, each on its own: polling never waits
            on them, an outage leaves a backlog that drains when the sink is back (also
            by the next run). False: write them directly (an outage loses the batch).

    Returns:
        One summary per device: samples ok/failed/missed/skipped, requests, rows
        written/quarantined. Degraded (a Completed state) when a device gave no valid
        reading, readings were quarantined or the run started late; Failed when no
        device gave a valid reading, the window was lost, or the buffer could not be
        written. A run that buffered everything but could not forward all of it ends
        Completed with a message naming the backlog per sink.
    """
    logger = get_run_logger()
    check_parameters(devices, samples, interval_seconds, span_seconds, _timeout_limit())
    # Concurrently: each is a block load, and the run's first slot is waiting.
    configs = [f.result() for f in [resolve_device.submit(name) for name in devices]]
    if write_raw:
        check_distinct_locations(configs)
        try:
            check_connection(load_engine(target_db), target_db)
        except ShopfloorError as exc:
            if not store_and_forward:
                raise
            logger.warning("%s: capturing into the buffer, forwarded when it is back", exc)
    if land_json:
        _check_landing(configs)
        load_block(raw_logs)  # an unknown block fails here, before any device is polled
    run_id = str(flow_run.get_id() or uuid.uuid4())
    anchor, slots, missed = _schedule(samples, interval_seconds, span_seconds,
                                      start_offset_seconds, time.time())
    progress = Progress(create_progress_artifact(0.0, key="modbus-capture-progress",
                                                 description="samples taken"),
                        slots * len(configs))
    logger.info("capturing %d slots every %.3fs from %s UTC from %d devices%s", slots,
                interval_seconds, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(anchor)),
                len(configs), f" ({missed} slots of the window already past)" if missed else "")
    shared = {cfg.name: CaptureStats(cfg.name) for cfg in configs}
    store = None
    if store_and_forward and (write_raw or land_json):
        store = open_store(configs, run_id, target_db if write_raw else None,
                           raw_logs if land_json else None, shared)
    try:
        futures = [
            capture_device_task.submit(cfg, slots, interval_seconds, anchor, run_id,
                                       target_db if write_raw else None,
                                       raw_logs if land_json else None, progress, missed,
                                       store.buffer if store else None, shared[cfg.name])
            for cfg in configs
        ]
        stats = [f.result() for f in futures]
    finally:
        if store is not None:
            close_store(store)
    summary = report(store, sum(s.samples_buffered for s in stats)) if store else ""
    if store is not None:
        store.buffer.close()
    _publish(stats)
    _emit_events(configs, stats)
    return _outcome(stats, missed, store, summary)


def _outcome(stats: list[CaptureStats], missed: int, store: StoreAndForward | None,
             summary: str) -> list[dict[str, object]] | State:
    """Failed, Degraded, Completed with the backlog named, or plain Completed."""
    logger = get_run_logger()
    rows = [s.as_row() for s in stats]
    judged: Verdict = verdict(stats, missed)
    if judged.outcome == "failed":
        raise ShopfloorError(judged.message + (f" ({summary})" if summary else ""))
    backlog = store is not None and (any(store.backlog.values()) or store.dropped > 0)
    if judged.outcome == "degraded":
        message = judged.message + (f"; {summary}" if backlog else "")
        logger.warning("degraded: %s", message)
        return degraded(rows, message)
    if summary:
        (logger.warning if backlog else logger.info)("%s", summary)
    if backlog:
        # Polling went on and every sample is buffered: the run did its job; the
        # backlog is told here, in the buffer artifact and by shopfloor.buffer.backlog.
        return Completed(message=summary, data=rows)
    return rows
