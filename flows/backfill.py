"""Flow ``hourly-backfill``: re-aggregate a date range in chunks with bounded concurrency."""

import time
from collections import deque
from datetime import date
from typing import Annotated, Any
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
from shopfloor.aggregation.windows import (
    DEFAULT_CHUNK_HOURS,
    Window,
    chunks,
    date_range_window,
    plan_chunk_concurrency,
)
from shopfloor.errors import ShopfloorError, first_line
from shopfloor.params import IsoDate, TimeZone
from shopfloor.quality import artifact_scores, worst
from tasks.aggregation import WAREHOUSE_LIMIT, aggregate_chunk, check_databases, warehouse_slots
from tasks.outcomes import ON_FAILURE


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


def _outcome(window: Window, future: PrefectFuture) -> tuple[dict[str, Any], list[Breach]]:
    future.wait()
    row: dict[str, Any] = {"chunk": window.label(), "status": "ok", "path": "", "groups": 0,
                           "upserted": 0, "unchanged": 0, "raw_rows": 0, "error": "",
                           **artifact_scores(None)}
    if not future.state.is_completed():
        exc = future.result(raise_on_failure=False)
        row.update(status="FAILED", error=first_line(exc, 300) if exc else "failed")
        return row, []
    stats, breaches = future.result()
    row.update(path=stats.path, groups=stats.groups, upserted=stats.upserted,
               unchanged=stats.unchanged, raw_rows=stats.raw_rows)
    row.update(artifact_scores(worst(stats.quality)))
    return row, breaches


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
    running, queue = plan.running, plan.queue
    logger.info("%d chunks of up to %d hours, %d at a time%s", len(parts), chunk_hours,
                running, plan.why)
    progress = create_progress_artifact(0.0, key="hourly-backfill-progress",
                                        description=f"{start_date} to {end_date}")
    pending: deque[tuple[Window, PrefectFuture]] = deque()
    rows: list[dict[str, Any]] = []
    breaches: list[Breach] = []

    def collect() -> None:
        row, found = _outcome(*pending.popleft())
        rows.append(row)
        breaches.extend(found)
        update_progress_artifact(progress, 100.0 * len(rows) / len(parts))
        if row["status"] != "ok":
            logger.error("chunk %s failed: %s", row["chunk"], row["error"])

    for window in parts:
        if len(pending) >= running:
            collect()
        pending.append((window, aggregate_chunk.submit(source_db, target_db, window, timezone,
                                                       queue)))
    while pending:
        collect()
    failed = [r for r in rows if r["status"] != "ok"]
    create_table_artifact(rows, key="hourly-backfill",
                          description=f"Backfill {start_date} to {end_date} ({timezone})")
    create_markdown_artifact(breaches_markdown(breaches, timezone), key="hourly-backfill-alerts",
                             description="Hours breaching location thresholds")
    summary = {
        "chunks": len(parts), "failed": len(failed),
        **{k: sum(r[k] for r in rows) for k in ("groups", "upserted", "unchanged", "raw_rows")},
        "breaches": len(breaches), "concurrency": running,
        "duration_s": round(time.perf_counter() - started, 2),
        # in-database, staged or portable: how the chunks reached the target
        "path": ", ".join(sorted({r["path"] for r in rows if r["path"]})),
    }
    logger.info("backfill done: %s", summary)
    if failed:
        raise ShopfloorError(
            f"{len(failed)} of {len(parts)} chunks failed ({failed[0]['chunk']}: "
            f"{failed[0]['error']}); rerun the same range to repair them")
    return summary
