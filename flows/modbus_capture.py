"""The ``modbus-capture`` flow: poll ModbusDevice blocks concurrently, validate, store."""

import re
import time
import uuid
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, create_table_artifact
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from blocks.resolve import load_block, load_engine
from shopfloor.db.engine import check_connection
from shopfloor.errors import ShopfloorError
from shopfloor.modbus.capture import (
    CaptureStats,
    check_distinct_locations,
    check_parameters,
    schedule_anchor,
)
from shopfloor.params import BlockName
from tasks.modbus import Progress, capture_device_task, resolve_device

MAX_DEVICES = 64  # one polling thread per device
START_LEAD_SECONDS = 2.0

# The limits a parameter's type can carry: the server refuses a run that breaks them
# before it exists, and the UI form shows them. The rest is in check_parameters.
DeviceNames = Annotated[list[BlockName], Field(min_length=1, max_length=MAX_DEVICES)]
Samples = Annotated[int, Field(ge=1)]
IntervalSeconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


def _artifact_key(device: str) -> str:
    return "modbus-capture-" + re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")


def _publish(stats: list[CaptureStats]) -> None:
    rows = [s.as_row() for s in stats]
    for row in rows:
        create_table_artifact(table=[row], key=_artifact_key(str(row["device"])),
                              description=f"Modbus capture of device {row['device']}")
    create_table_artifact(table=rows, key="modbus-capture",
                          description="Modbus capture: one line per device")


@flow(name="modbus-capture", task_runner=ThreadPoolTaskRunner(max_workers=MAX_DEVICES))
def modbus_capture(
    devices: DeviceNames,
    samples: Samples = 1,
    interval_seconds: IntervalSeconds = 5.0,
    write_raw: bool = True,
    land_json: bool = False,
    target_db: BlockName = "shopfloor-warehouse-db",
    raw_logs: BlockName = "shopfloor-raw-logs",
) -> list[dict[str, object]]:
    """Poll Modbus devices concurrently; write validated readings, quarantine bad ones.

    Each device is polled on the same schedule (sample k at start + k * interval,
    aligned to a multiple of the interval) in its own thread, so a dead or slow device
    never delays the others. Failed reads are retried with backoff within the sample.

    Args:
        devices: ModbusDevice block names to poll (1 to 64, each once).
        samples: how many samples to take per device (>= 1).
        interval_seconds: seconds between samples (>= 0; > 0 when samples > 1).
        write_raw: upsert valid readings into temperature_raw and bad ones into quarantine.
        land_json: also write valid readings as JSON lines to the raw_logs storage.
        target_db: SqlAlchemyConnector block of the database to write to.
        raw_logs: S3Bucket or LocalFileSystem block where JSON telemetry lands.

    Returns:
        One summary per device: samples ok/failed/missed, requests, rows written/quarantined.
    """
    logger = get_run_logger()
    check_parameters(devices, samples, interval_seconds)
    configs = [resolve_device(name) for name in devices]
    if write_raw:
        check_distinct_locations(configs)
        check_connection(load_engine(target_db), target_db)
    if land_json:
        load_block(raw_logs)  # an unknown block fails here, before any device is polled
    run_id = str(flow_run.get_id() or uuid.uuid4())
    # Sample 0 is due on the first interval boundary after a short lead time, so the
    # device tasks have started (and resolved their blocks) before it is due.
    anchor = schedule_anchor(interval_seconds, now=time.time() + START_LEAD_SECONDS)
    total = samples * len(configs)
    progress = Progress(create_progress_artifact(0.0, key="modbus-capture-progress",
                                                 description="samples taken"), total)
    logger.info("capturing %d samples every %.3fs from %d devices", samples, interval_seconds,
                len(configs))
    futures = [
        capture_device_task.submit(cfg, samples, interval_seconds, anchor, run_id,
                                   target_db if write_raw else None,
                                   raw_logs if land_json else None, progress)
        for cfg in configs
    ]
    stats = [f.result() for f in futures]
    _publish(stats)
    if not any(s.samples_ok for s in stats):
        raise ShopfloorError("no device answered a single sample: " + "; ".join(
            f"{s.device}: {s.last_error or 'no reading'}" for s in stats))
    return [s.as_row() for s in stats]
