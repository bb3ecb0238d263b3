"""The ``modbus-capture`` flow: poll ModbusDevice blocks concurrently, validate, store."""

import os
import time
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, create_table_artifact
from prefect.context import FlowRunContext
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from blocks.resolve import load_block
from shopfloor.db.engine import check_connection
from shopfloor.errors import ShopfloorError, UserError
from shopfloor.modbus.capture import (
    CaptureStats,
    check_distinct_locations,
    check_landing,
    check_parameters,
    plan_schedule,
)
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.outcome import artifact_key, device_events, final_verdict, verdict
from shopfloor.params import BlockName
from tasks.forwarding import StoreAndForward, close_store, open_store, report
from tasks.modbus import Progress, capture_devices_task, load_line_task, resolve_devices
from tasks.outcomes import ON_FAILURE, conclude, emit
from tasks.runtime import engine, run_token, scheduled_start

# Devices one run may poll. The engine holds them all on one event loop (a connection,
# not a thread, per device; the run checks it may open a file per device). The bound is
# a sanity limit, not a measured capacity: how many devices a worker keeps on its grid
# depends on its core and the interval (docs/modbus.md, "The capture engine"); a plant
# with more splits them over several deployments. SHOPFLOOR_MODBUS_MAX_DEVICES overrides
# it (read when the flow is imported: it is the parameter schema's bound).
MAX_DEVICES = int(os.environ.get("SHOPFLOOR_MODBUS_MAX_DEVICES", "2000"))
# Threads of the flow's task runner: the run's few tasks (resolve, capture), not devices.
TASK_THREADS = 4
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
LineFile = Annotated[str, Field(min_length=1)]


def _devices(names: list[str], line_file: str | None,
             ) -> tuple[list[DeviceConfig], dict[str, int]]:
    """The run's devices: the named blocks, then the line file's (read now, so an edit
    is picked up by the next run); and the file's polls at once per gateway."""
    configs = resolve_devices(names) if names else []
    limits: dict[str, int] = {}
    if line_file:
        line = load_line_task(line_file)
        clash = sorted({c.name for c in configs} & {d.name for d in line.devices})
        if clash:
            raise UserError(f"devices named both as a block and in {line_file}: "
                            f"{', '.join(clash)}")
        configs += line.devices
        limits = line.gateway_limits()
    if not configs:
        raise UserError("no device to poll: name ModbusDevice blocks or give line_file")
    if len(configs) > MAX_DEVICES:
        raise UserError(f"{len(configs)} devices: a run polls at most {MAX_DEVICES}")
    return configs, limits


def _publish(configs: list[DeviceConfig], stats: list[CaptureStats]) -> None:
    """One artifact per device and one of the run; one event per device."""
    rows = [s.as_row() for s in stats]
    for row in rows:
        create_table_artifact(table=[row], key=artifact_key(str(row["device"])),
                              description=f"Modbus capture of device {row['device']}")
    create_table_artifact(table=rows, key="modbus-capture",
                          description="Modbus capture: one line per device")
    for e in device_events(configs, stats):
        emit(e.event, e.resource, e.payload, **e.labels)


def _timeout_limit() -> float | None:
    """Seconds a run may sample: the running flow's timeout (with_options may change
    it) less a margin for the last writes."""
    ctx = FlowRunContext.get()
    timeout = ctx.flow.timeout_seconds if ctx is not None else TIMEOUT_SECONDS
    return None if not timeout else timeout - TIMEOUT_MARGIN_SECONDS


def _check_sinks(configs: list[DeviceConfig], write_raw: bool, land_json: bool,
                 target_db: str, raw_logs: str, store_and_forward: bool) -> None:
    """Fail before any device is polled on what cannot work; a database that does not
    answer is only a warning when the buffer holds the samples until it is back."""
    if write_raw:
        check_distinct_locations(configs)
        try:
            check_connection(engine(target_db), target_db)
        except ShopfloorError as exc:
            if not store_and_forward:
                raise
            get_run_logger().warning("%s: capturing into the buffer, forwarded when it is "
                                     "back", exc)
    if land_json:
        check_landing(configs)
        load_block(raw_logs)  # an unknown block fails here, before any device is polled


def _scheduled_time() -> float | None:
    """When a deployment run was scheduled for (epoch seconds); None for a plain call."""
    scheduled = scheduled_start()
    return None if scheduled is None else scheduled.timestamp()


def _capture(configs: list[DeviceConfig], plan: tuple[float, int, int], interval: float,
             run_id: str, sinks: tuple[str | None, str | None], store_and_forward: bool,
             progress: Progress, gateway_limits: dict[str, int] | None = None,
             ) -> tuple[list[CaptureStats], StoreAndForward | None, str]:
    """Every device on the engine's event loop, through the buffer (or straight to the
    sinks); returns the devices' counters, the store and what it could not forward yet."""
    anchor, slots, missed = plan
    shared = {cfg.name: CaptureStats(cfg.name) for cfg in configs}
    store = None
    if store_and_forward and any(sinks):
        store = open_store(configs, run_id, *sinks, shared)
    try:
        stats = capture_devices_task(configs, slots, interval, anchor, run_id, *sinks,
                                     progress, missed, store.buffer if store else None,
                                     shared, gateway_limits)
    finally:
        if store is not None:
            close_store(store)
    if store is None:
        return stats, None, ""
    summary = report(store, sum(s.samples_buffered for s in stats))
    store.buffer.close()
    return stats, store, summary


@flow(name="modbus-capture", task_runner=ThreadPoolTaskRunner(max_workers=TASK_THREADS),
      timeout_seconds=TIMEOUT_SECONDS, on_failure=ON_FAILURE)
def modbus_capture(
    devices: DeviceNames | None = None,
    samples: Samples = 1,
    interval_seconds: IntervalSeconds = 5.0,
    write_raw: bool = True,
    land_json: bool = False,
    target_db: BlockName = "shopfloor-warehouse-db",
    raw_logs: BlockName = "shopfloor-raw-logs",
    span_seconds: SpanSeconds | None = None,
    start_offset_seconds: OffsetSeconds | None = None,
    store_and_forward: bool = True,
    line_file: LineFile | None = None,
) -> list[dict[str, object]] | State:
    """Poll Modbus devices concurrently; write validated readings, quarantine bad ones.

    Each device is polled on the same grid (sample slots at multiples of the interval)
    by its own coroutine on one event loop, so a dead or slow device never delays the
    others. Failed reads
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
        devices: ModbusDevice block names to poll (up to 2000, each once); may be
            left out when line_file gives the devices.
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
        line_file: a line file on the worker (YAML: devices, their maps, defaults,
            gateways; docs/modbus.md, "Line file"), read at the start of every run so
            an edit is picked up by the next run; its devices are polled with the named
            blocks. A bad file fails the run naming the line and key.

    Returns:
        One summary per device: samples ok/failed/missed/skipped, requests, rows
        written/quarantined. Degraded (a Completed state) when a device gave no valid
        reading, readings were quarantined or the run started late; Failed when no
        device gave a valid reading, the window was lost, or the buffer could not be
        written. A run that buffered everything but could not forward all of it ends
        Completed with a message naming the backlog per sink.
    """
    logger = get_run_logger()
    check_parameters(devices or [], samples, interval_seconds, span_seconds,
                     _timeout_limit())
    configs, gateway_limits = _devices(list(devices or []), line_file)
    _check_sinks(configs, write_raw, land_json, target_db, raw_logs, store_and_forward)
    run_id = run_token()
    plan = plan_schedule(samples, interval_seconds, span_seconds, start_offset_seconds,
                         time.time(), _scheduled_time())
    anchor, slots, missed = plan
    progress = Progress(create_progress_artifact(0.0, key="modbus-capture-progress",
                                                 description="samples taken"),
                        slots * len(configs))
    logger.info("capturing %d slots every %.3fs from %s UTC from %d devices%s", slots,
                interval_seconds, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(anchor)),
                len(configs), f" ({missed} slots of the window already past)" if missed else "")
    stats, store, summary = _capture(
        configs, plan, interval_seconds, run_id,
        (target_db if write_raw else None, raw_logs if land_json else None),
        store_and_forward, progress, gateway_limits)
    _publish(configs, stats)
    backlog = store is not None and (any(store.backlog.values()) or store.dropped > 0)
    decided = final_verdict(verdict(stats, missed), summary, backlog)
    if decided.kind != "failed" and (decided.message or summary):
        (logger.warning if decided.kind == "degraded" or backlog else logger.info)(
            "%s: %s", decided.kind, decided.message or summary)
    return conclude(decided, [s.as_row() for s in stats])
