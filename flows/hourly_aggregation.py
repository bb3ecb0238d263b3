"""Flow ``hourly-aggregation``: raw readings -> ``temperature_hourly``, late data included."""

import time
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import State
from pydantic import Field

from shopfloor.aggregation.alerts import breaches_markdown
from shopfloor.aggregation.hours import local_hour_index, resolve_timezone
from shopfloor.aggregation.incremental import (
    DEFAULT_MAX_CATCHUP_HOURS,
    IncrementalPlan,
    plan_incremental,
)
from shopfloor.aggregation.late import DEFAULT_LATENESS_MINUTES
from shopfloor.aggregation.outcome import (
    completed_payload,
    fresh_breaches,
    hourly_summary,
    shortfalls,
)
from shopfloor.aggregation.windows import Window, plan_windows
from shopfloor.db.types import utcnow
from shopfloor.outcome import from_notes
from shopfloor.params import IsoDateTime, TimeZone
from tasks.aggregation import (
    check_databases,
    emit_threshold_alerts,
    find_threshold_breaches,
    plan_late_data,
    read_watermark,
    roll_up_tags,
    write_hourly,
)
from tasks.outcomes import ON_FAILURE, conclude, emit
from tasks.runtime import logical_now

# Scheduled hourly: a run still going after 50 minutes would overlap the next one.
TIMEOUT_SECONDS = 50 * 60
COMPLETED_EVENT = "shopfloor.hourly.completed"


def watermark_name(source_db: str) -> str:
    """The late-data watermark of one source (stored on the target)."""
    return f"hourly-aggregation:{source_db}"


def closed_watermark_name(source_db: str) -> str:
    """The closed-through watermark of one source: the end (UTC) of the last closed hour
    an incremental run wrote (stored on the target)."""
    return f"hourly-aggregation:{source_db}:closed-through"


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


def _plan(source_db: str, target_db: str, timezone: str, tz: ZoneInfo, late_data: bool,
          max_catchup_hours: int, lateness_minutes: int
          ) -> tuple[IncrementalPlan, dict[str, datetime], int, int]:
    """The incremental plan at the run's logical time, its watermarks, late rows, and the
    first hour no earlier run had closed (an empty hour is reported by one run only)."""
    now = logical_now()
    late, marks, late_rows = [], {}, 0
    if late_data:
        lp = plan_late_data(source_db, target_db, timezone, watermark_name(source_db),
                            lateness_minutes, now)
        late, late_rows = lp.pairs, lp.late_rows
        if lp.new_watermark is not None:
            marks[watermark_name(source_db)] = lp.new_watermark
    closed_mark = closed_watermark_name(source_db)
    previous = read_watermark(target_db, closed_mark)
    plan = plan_incremental(now, tz, late, previous, max_catchup_hours)
    marks[closed_mark] = plan.closed_through
    first_new = local_hour_index(previous, tz) if previous is not None else plan.closed.first
    get_run_logger().info(
        "logical time %s: closed hours %s%s", now.isoformat(), plan.closed.label(),
        f", {plan.deferred} late (location, hour) pair(s) in the open hour left for the "
        "next run" if plan.deferred else "")
    return plan, marks, late_rows, first_new


@flow(name="hourly-aggregation", timeout_seconds=TIMEOUT_SECONDS, on_failure=ON_FAILURE)
def hourly_aggregation(
    start: IsoDateTime | None = None,
    end: IsoDateTime | None = None,
    source_db: str = "shopfloor-source-db",
    target_db: str = "shopfloor-warehouse-db",
    timezone: TimeZone = "UTC",
    late_data: bool = True,
    max_catchup_hours: Annotated[int, Field(ge=1, le=24 * 92)] = DEFAULT_MAX_CATCHUP_HOURS,
    lateness_minutes: Annotated[int, Field(ge=0, le=7 * 24 * 60)] = DEFAULT_LATENESS_MINUTES,
) -> dict[str, Any] | State:
    """Aggregate raw temperature readings into hourly max/avg rows per location.

    One GROUP BY per window runs on the source database; only the hourly groups are
    upserted into ``temperature_hourly`` on the target (holding a slot of the
    ``shopfloor-warehouse-db`` concurrency limit), then checked: every group is there
    and the sample counts add up to the raw row count. When both blocks name the same
    PostgreSQL or SQLite database the groups never leave it (``path`` in-database, as in
    the backfill); into another PostgreSQL or SQLite target they are streamed in batches
    through a temporary table (``staged``); MySQL and SQL Server targets take the
    ``portable`` path. The summary's ``rows`` are the hourly rows of active locations.
    Hours whose max or avg breach a location's thresholds are listed in an artifact;
    those whose values changed in this run are emitted as
    ``shopfloor.threshold.breached`` events (resource ``shopfloor.location.<loc_id>``).
    Every run that wrote emits ``shopfloor.hourly.completed`` (resource
    ``shopfloor.warehouse.<target_db>``).

    Where the source database holds ``tag_samples``, every run also rolls them up there
    into ``tag_hourly`` and ``tag_daily`` (the (tag, hour) pairs that received rows since
    the last rollup, and their days; ``tag_*`` counters in the summary and artifact);
    without that table the step is skipped.

    An incremental run (no ``start``/``end``) works at its logical time: a scheduled run
    at the time it was scheduled for, so a run started late aggregates its own hour. It
    writes only closed hours: from the last closed hour a previous incremental run wrote
    up to the last hour closed at that time (a catch-up after an outage leaves no hole),
    plus closed hours that received late readings. The hour still open is left for the
    next run. A closed hour without any reading ends the run ``Degraded``.

    Args:
        start: first hour to aggregate (naive values are local to ``timezone``); with
            ``end``. Leave both empty for an incremental run.
        end: end of the window, exclusive; a partial hour is aggregated whole.
        source_db: SqlAlchemyConnector block holding ``temperature_raw``.
        target_db: SqlAlchemyConnector block holding ``temperature_hourly`` and ``location``.
        timezone: IANA time zone of the hour buckets (``ymd``/``hh``), e.g. ``Asia/Makassar``.
        late_data: in an incremental run, also re-aggregate hours that received readings
            since the last run (found by ``ingested_at``; on a raw table without it, by
            reading time within ``lateness_minutes``).
        max_catchup_hours: an incremental run covers at most this many closed hours
            (the newest); older ones missed by an outage are named in a ``Degraded``
            state, for ``hourly-backfill``.
        lateness_minutes: only for a raw table without ``ingested_at``
            (``SHOPFLOOR_RAW_INGESTED_AT=false``): re-aggregate the hours holding rows read
            up to this long before the newest reading of the last run. A row arriving
            later than that is missed unless its hour is re-aggregated anyway (backfill).
    """
    started = time.perf_counter()
    tz = check_parameters(start, end, timezone)
    check_databases(source_db, target_db)  # unknown blocks fail here, then unreachable ones
    plan: IncrementalPlan | None = None
    marks: dict[str, datetime] = {}
    late_rows, first_new = 0, 0
    if start is None:
        plan, marks, late_rows, first_new = _plan(source_db, target_db, timezone, tz, late_data,
                                                  max_catchup_hours, lateness_minutes)
    windows: list[Window] = plan.windows if plan else plan_windows(start, end, tz, utcnow())
    get_run_logger().info("aggregating %d window(s): %s", len(windows),
                          "; ".join(w.label() for w in windows[:10]))
    stats, rows = write_hourly(source_db, target_db, windows, timezone, marks)
    breaches = find_threshold_breaches(target_db, rows)
    create_markdown_artifact(breaches_markdown(breaches, timezone),
                             key="hourly-aggregation-alerts",
                             description="Hours breaching location thresholds")
    fresh = fresh_breaches(breaches, stats.changed)
    events = emit_threshold_alerts(fresh, timezone) if fresh else 0
    tags = roll_up_tags(source_db)  # tag_samples -> tag_hourly/tag_daily, on the source
    empty, notes = shortfalls(plan, stats.hours, tz, timezone, first_new)
    summary = hourly_summary(len(windows), stats, late_rows, len(empty), len(breaches), events,
                             timezone, time.perf_counter() - started, tags)
    if stats.stale:
        get_run_logger().warning("%d hourly rows in the target have no raw rows in the "
                                 "source any more (kept): %s", len(stats.stale), stats.stale[:5])
    create_table_artifact([summary], key="hourly-aggregation",
                          description="Hourly aggregation run")
    emit(COMPLETED_EVENT, f"shopfloor.warehouse.{target_db}",
         completed_payload(stats, len(empty), plan is not None, timezone))
    return conclude(from_notes(notes), {**summary, "rows": rows})
