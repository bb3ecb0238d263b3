"""Flow ``reprocess-raw``: judge a window of landed raw data again, replace it downstream."""

import time
from datetime import datetime
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import Field

from blocks.resolve import load_block
from shopfloor.aggregation.hours import resolve_timezone
from shopfloor.aggregation.windows import Window, explicit_window
from shopfloor.errors import UserError
from shopfloor.modbus.reprocess import HOUR, window_hours
from shopfloor.params import BlockName, DistrictCode, IsoDateTime, TimeZone
from tasks.aggregation import aggregate_chunk
from tasks.outcomes import ON_FAILURE
from tasks.reprocess import drop_emptied_hours, reprocess_device, resolve_devices
from tasks.runtime import run_token

DeviceNames = Annotated[list[BlockName], Field(min_length=1, max_length=64)]


def check_parameters(devices: list[str] | None, district: str | None, start: datetime,
                     end: datetime, timezone: str) -> list[datetime]:
    """The rules across fields: devices or a district (one of them), an aware window of
    at most a quarter, an existing zone. Called by the flow and ``shopfloor modbus
    reprocess``. Returns the window's whole UTC hours.

    Raises:
        ShopfloorError: with one line saying what to change.
    """
    if bool(devices) == bool(district):
        raise UserError("give devices or a district (one of them)")
    resolve_timezone(timezone)
    return window_hours(start, end)


@flow(name="reprocess-raw", timeout_seconds=4 * 3600, on_failure=ON_FAILURE)
def reprocess_raw(
    start: IsoDateTime,
    end: IsoDateTime,
    devices: DeviceNames | None = None,
    district: DistrictCode | None = None,
    raw_logs: BlockName = "shopfloor-raw-logs",
    target_db: BlockName = "shopfloor-warehouse-db",
    hourly_source_db: BlockName = "shopfloor-source-db",
    hourly_target_db: BlockName = "shopfloor-warehouse-db",
    timezone: TimeZone = "UTC",
) -> dict[str, Any]:
    """Judge landed raw data of a window again under the devices' current rules.

    For each device (named, or every ``ModbusDevice`` of a district): its landed JSON
    objects of the window's UTC hours are read back and judged by the capture's own
    validation under its current register map and limits; its ``temperature_raw`` rows
    and quarantine rows of those hours are replaced in one transaction; the objects are
    rewritten with the new verdicts (same keys); the hours are aggregated again (and an
    hour left without valid readings loses its hourly row). Hours without a landed
    object are left as they are. Running it twice changes nothing.

    Args:
        start: window start (aware; widened to the whole UTC hour).
        end: window end, excluded (aware; widened to the whole UTC hour).
        devices: ModbusDevice block names.
        district: instead of devices: every ModbusDevice block of this district.
        raw_logs: storage block the capture landed JSON in.
        target_db: SqlAlchemyConnector block of temperature_raw and quarantine (the
            capture's target_db).
        hourly_source_db: block the hourly aggregation reads raw readings from.
        hourly_target_db: block of temperature_hourly.
        timezone: IANA zone of the hourly buckets (as the hourly flow runs).
    """
    started, logger = time.perf_counter(), get_run_logger()
    hours = check_parameters(devices, district, start, end, timezone)
    load_block(raw_logs)  # an unknown block fails here, before anything is read
    configs = resolve_devices(devices, district)
    run_id = run_token()
    results = [reprocess_device(cfg, hours, raw_logs, target_db, run_id) for cfg in configs]
    touched = sorted({h for r in results for h in r.hours})
    loc_ids = tuple(sorted({r.loc_id for r in results if r.hours}))
    aggregated, dropped = 0, 0
    if touched:
        tz = resolve_timezone(timezone)
        local = explicit_window(touched[0], touched[-1] + HOUR, tz)
        stats, _ = aggregate_chunk(hourly_source_db, hourly_target_db,
                                   Window(local.first, local.last, loc_ids), timezone)
        aggregated = local.hours
        dropped = drop_emptied_hours(hourly_target_db,
                                     [k for k in stats.stale if k[0] in loc_ids])
    rows = [r.as_row() for r in results]
    create_table_artifact(rows, key="reprocess-raw",
                          description=f"Reprocess {hours[0].isoformat()} to "
                                      f"{(hours[-1] + HOUR).isoformat()}: one line per device")
    summary: dict[str, Any] = {
        "devices": len(results),
        **{k: sum(int(r[k]) for r in rows) for k in (  # type: ignore[call-overload]
            "objects_read", "objects_rewritten", "rows_valid_before", "rows_rejected_before",
            "rows_valid_after", "rows_rejected_after", "raw_written", "quarantine_written")},
        "hours_reaggregated": aggregated, "hourly_rows_dropped": dropped,
        "duration_s": round(time.perf_counter() - started, 2),
    }
    logger.info("reprocess done: %s", summary)
    return summary
