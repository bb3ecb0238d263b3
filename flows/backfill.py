"""Flow ``hourly-backfill``: re-aggregate a date range in chunks with bounded concurrency."""

import time
from collections import deque
from collections.abc import Callable
from datetime import date
from typing import Annotated, Any
from uuid import UUID
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import PrefectFuture
from pydantic import Field

from shopfloor.aggregation.alerts import Breach, breaches_markdown
from shopfloor.aggregation.hours import resolve_timezone
from shopfloor.aggregation.outcome import backfill_summary, backfill_verdict, chunk_row
from shopfloor.aggregation.windows import (
    DEFAULT_CHUNK_HOURS,
    Window,
    chunks,
    date_range_window,
    plan_chunk_concurrency,
)
from shopfloor.params import IsoDate, TimeZone
from tasks.aggregation import aggregate_chunk, check_databases
from tasks.outcomes import ON_FAILURE, conclude
from tasks.runtime import WAREHOUSE_LIMIT, warehouse_slots


def check_parameters(start_date: date, end_date: date, timezone: str) -> ZoneInfo:
    """Refuse what the parameter schema cannot say, before anything connects.

    ``end_date`` not before ``start_date`` (the rule of
    :func:`~shopfloor.aggregation.windows.date_range_window`), and a zone that exists
    (the schema's enum guards a deployment run; this guards the CLI and plain callers).
    ``chunk_hours`` and ``max_concurrency`` are limited by their types in the flow
    signature. Called by the flow and by ``shopfloor hourly backfill``.

    Returns:
        The resolved zone, so a run resolves it once.

    Raises:
        ShopfloorError: with one line saying what to change.
    """
    tz = resolve_timezone(timezone)
    date_range_window(start_date, end_date, tz)
    return tz


def _collect(window: Window, future: PrefectFuture) -> tuple[dict[str, Any], list[Breach]]:
    """A finished chunk's artifact row and breaches (a failed chunk: its error, none)."""
    future.wait()
    if not future.state.is_completed():
        return chunk_row(window.label(), error=future.result(raise_on_failure=False)), []
    stats, breaches = future.result()
    return chunk_row(window.label(), stats), breaches


def _run_chunks(parts: list[Window], running: int, submit: Callable[[Window], PrefectFuture],
                progress: UUID) -> tuple[list[dict[str, Any]], list[Breach]]:
    """Every chunk, at most ``running`` at a time; a failed chunk is logged, the others go on."""
    pending: deque[tuple[Window, PrefectFuture]] = deque()
    rows: list[dict[str, Any]] = []
    breaches: list[Breach] = []

    def collect() -> None:
        row, found = _collect(*pending.popleft())
        rows.append(row)
        breaches.extend(found)
        update_progress_artifact(progress, 100.0 * len(rows) / len(parts))
        if row["status"] != "ok":
            get_run_logger().error("chunk %s failed: %s", row["chunk"], row["error"])

    for window in parts:
        if len(pending) >= running:
            collect()
        pending.append((window, submit(window)))
    while pending:
        collect()
    return rows, breaches


# Generous: a year of hourly rows in day chunks takes minutes, yet a backfill waits for
# warehouse slots behind the hourly run. A run still going after a day is stuck; rerunning
# the same range repairs what it left (finished chunks are unchanged, not rewritten).
TIMEOUT_SECONDS = 24 * 3600


@flow(name="hourly-backfill", timeout_seconds=TIMEOUT_SECONDS, on_failure=ON_FAILURE)
def hourly_backfill(
    start_date: IsoDate,
    end_date: IsoDate,
    chunk_hours: Annotated[int, Field(ge=1, le=24 * 366)] = DEFAULT_CHUNK_HOURS,
    max_concurrency: Annotated[int, Field(ge=1, le=32)] = 4,
    source_db: str = "shopfloor-source-db",
    target_db: str = "shopfloor-warehouse-db",
    timezone: TimeZone = "UTC",
) -> dict[str, Any]:
    """Re-aggregate whole local days into ``temperature_hourly``, chunk by chunk.

    Each chunk is one GROUP BY on the source and one transaction on the target (the
    groups stay in the database when both blocks name the same PostgreSQL or SQLite
    database, and are streamed through a temporary table into another PostgreSQL or
    SQLite target; ``path`` in the summary and the artifact says which), so a
    failed chunk is reported and leaves the others committed; rerunning the same range
    repairs it and leaves the rest unchanged (unchanged rows are not rewritten). The run
    fails at the end if any chunk failed. Threshold breaches are listed in an artifact
    (no events: a backfill replays history, it should not page anyone). Each chunk holds
    a slot of the ``shopfloor-warehouse-db`` concurrency limit while it writes, so when
    the limit exists chunks take turns with the hourly run and master data sync, and no
    more chunks run at once than the limit has slots (``concurrency`` in the summary).

    Args:
        start_date: first local day of the range.
        end_date: last local day of the range (included).
        chunk_hours: hours per chunk (one GROUP BY and one transaction each); default a
            week of local days.
        max_concurrency: chunks running at the same time (1-32); fewer when the
            warehouse limit has fewer slots, and one when ``chunk_hours`` is not a
            multiple of 24 (chunks sharing a day would rewrite its daily rows together)
            or the target is SQLite (one writer at a time).
        source_db: SqlAlchemyConnector block holding ``temperature_raw``.
        target_db: SqlAlchemyConnector block holding ``temperature_hourly``.
        timezone: IANA time zone of the days and hour buckets.
    """
    started, logger = time.perf_counter(), get_run_logger()
    tz = check_parameters(start_date, end_date, timezone)
    parts = chunks(date_range_window(start_date, end_date, tz), chunk_hours)
    # unknown blocks fail here, then unreachable ones
    databases = check_databases(source_db, target_db)
    plan = plan_chunk_concurrency(max_concurrency, warehouse_slots(), databases["overlaps"],
                                  chunk_hours, databases["target"], WAREHOUSE_LIMIT)
    logger.info("%d chunks of up to %d hours, %d at a time%s", len(parts), chunk_hours,
                plan.running, plan.why)
    progress = create_progress_artifact(0.0, key="hourly-backfill-progress",
                                        description=f"{start_date} to {end_date}")
    rows, breaches = _run_chunks(
        parts, plan.running, lambda window: aggregate_chunk.submit(
            source_db, target_db, window, timezone, plan.queue), progress)
    create_table_artifact(rows, key="hourly-backfill",
                          description=f"Backfill {start_date} to {end_date} ({timezone})")
    create_markdown_artifact(breaches_markdown(breaches, timezone), key="hourly-backfill-alerts",
                             description="Hours breaching location thresholds")
    summary = backfill_summary(rows, len(parts), len(breaches), plan.running,
                               time.perf_counter() - started)
    logger.info("backfill done: %s", summary)
    return conclude(backfill_verdict(rows), summary)
