"""Flow ``hourly-aggregation``: raw readings -> ``temperature_hourly``, late data included."""

import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from shopfloor.aggregation.alerts import breaches_markdown
from shopfloor.aggregation.hours import resolve_timezone
from shopfloor.aggregation.transfer import window_rows
from shopfloor.aggregation.windows import plan_windows
from shopfloor.db.types import utcnow
from shopfloor.params import IsoDateTime, TimeZone
from tasks.aggregation import (
    aggregate_windows,
    check_databases,
    emit_threshold_alerts,
    find_threshold_breaches,
    plan_late_data,
    write_hourly,
)


def watermark_name(source_db: str) -> str:
    """The late-data watermark of one source (stored on the target)."""
    return f"hourly-aggregation:{source_db}"


def check_parameters(start: datetime | None, end: datetime | None, timezone: str) -> ZoneInfo:
    """Refuse what the parameter schema cannot say, before anything connects.

    Both ``start`` and ``end`` or neither, ``end`` after ``start`` (the rules of
    :func:`~shopfloor.aggregation.windows.plan_windows`), and a zone that exists (the
    schema's enum guards a deployment run; this guards the CLI and plain callers).
    Called by the flow and by ``shopfloor hourly aggregate``.

    Returns:
        The resolved zone, so a run resolves it once.

    Raises:
        ShopfloorError: with one line saying what to change.
    """
    tz = resolve_timezone(timezone)
    plan_windows(start, end, tz, utcnow())
    return tz


@flow(name="hourly-aggregation")
def hourly_aggregation(
    start: IsoDateTime | None = None,
    end: IsoDateTime | None = None,
    source_db: str = "shopfloor-source-db",
    target_db: str = "shopfloor-warehouse-db",
    timezone: TimeZone = "UTC",
    late_data: bool = True,
) -> dict[str, Any]:
    """Aggregate raw temperature readings into hourly max/avg rows per location.

    One GROUP BY per window runs on the source database; only the hourly groups are
    upserted into ``temperature_hourly`` on the target, then checked: every group is
    there and the sample counts add up to the raw row count. Hours whose max or avg
    breach a location's thresholds are listed in an artifact; those whose values changed
    in this run are emitted as ``shopfloor.threshold.breached`` events (resource
    ``shopfloor.location.<loc_id>``) for automations.

    Args:
        start: first hour to aggregate (naive values are local to ``timezone``); with
            ``end``. Leave both empty for an incremental run: the last closed hour plus
            every hour that received readings since the last run.
        end: end of the window, exclusive; a partial hour is aggregated whole.
        source_db: SqlAlchemyConnector block holding ``temperature_raw``.
        target_db: SqlAlchemyConnector block holding ``temperature_hourly`` and ``location``.
        timezone: IANA time zone of the hour buckets (``ymd``/``hh``), e.g. ``Asia/Makassar``.
        late_data: in an incremental run, also re-aggregate hours that received readings
            since the last run (found by ``ingested_at``).
    """
    started = time.perf_counter()
    logger = get_run_logger()
    tz = check_parameters(start, end, timezone)
    check_databases(source_db, target_db)  # unknown blocks fail here, then unreachable ones
    now = utcnow()
    mark, new_mark, late_rows, late = None, None, 0, []
    if start is None and late_data:
        mark = watermark_name(source_db)
        plan = plan_late_data(source_db, target_db, timezone, mark)
        late, new_mark, late_rows = plan.pairs, plan.new_watermark, plan.late_rows
    windows = plan_windows(start, end, tz, now, late)
    logger.info("aggregating %d window(s): %s", len(windows),
                "; ".join(w.label() for w in windows[:10]))
    results = aggregate_windows(source_db, windows, timezone)
    stats = write_hourly(target_db, results, mark, new_mark)
    rows = window_rows(results)
    breaches = find_threshold_breaches(target_db, rows)
    create_markdown_artifact(breaches_markdown(breaches, timezone),
                             key="hourly-aggregation-alerts",
                             description="Hours breaching location thresholds")
    # Only hours whose values changed in this run raise events, so a rerun or the
    # late-data overlap never repeats an alert an automation has already acted on.
    fresh = [b for b in breaches if (b.loc_id, b.ymd, b.hh) in stats.changed]
    events = emit_threshold_alerts(fresh, timezone) if fresh else 0
    summary = {
        "windows": len(windows), "raw_rows": stats.raw_rows, "late_rows": late_rows,
        "groups": stats.groups, "upserted": stats.upserted, "unchanged": stats.unchanged,
        "stale_rows": len(stats.stale), "breaches": len(breaches), "alert_events": events,
        "timezone": timezone, "duration_s": round(time.perf_counter() - started, 2),
    }
    if stats.stale:
        logger.warning("%d hourly rows in the target have no raw rows in the source any "
                       "more (kept): %s", len(stats.stale), stats.stale[:5])
    create_table_artifact([summary], key="hourly-aggregation",
                          description="Hourly aggregation run")
    summary["rows"] = rows
    return summary
