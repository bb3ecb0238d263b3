"""Tasks of the hourly aggregation, backfill and master data sync flows."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from prefect import get_run_logger, task
from prefect.events import emit_event

from shopfloor.aggregation.alerts import (
    Breach,
    breach_event,
    by_hour,
    find_breaches,
    load_thresholds,
)
from shopfloor.aggregation.hours import resolve_timezone
from shopfloor.aggregation.in_database import (
    aggregate_and_write,
    choose_path,
    overlaps_source,
    target_transaction,
    write_windows,
)
from shopfloor.aggregation.incremental import later
from shopfloor.aggregation.late import (
    DEFAULT_LATENESS_MINUTES,
    late_since,
    plan_late_by_capture,
)
from shopfloor.aggregation.locations import (
    apply_locations,
    read_source_locations,
    validate_locations,
)
from shopfloor.aggregation.tag_rollup import roll_up_database
from shopfloor.aggregation.transfer import (
    LATE_OVERLAP,
    LatePlan,
    WriteStats,
    plan_late,
    source_snapshot,
)
from shopfloor.aggregation.windows import Window
from shopfloor.db.engine import check_connection
from shopfloor.db.types import utcnow
from shopfloor.db.watermark import get_watermark, set_watermark
from shopfloor.quality import write_quarantine
from tasks import runtime
from tasks.runtime import RETRIED, RETRIED_ONCE, warehouse_slot

MAX_EVENTS = 1000  # one run never floods the event stream; the artifact lists them all
# A backfill's chunks in this process queue here for their turn to write (a lock: no
# polling), so the one at the front asks Prefect for the slot while the next aggregates.
_CHUNK_TURNS = threading.Lock()


@contextmanager
def chunk_turn() -> Iterator[None]:
    """A backfill chunk's turn to write: first in this process (its run's other chunks),
    then a slot of the warehouse limit (the hourly run and master sync)."""
    with _CHUNK_TURNS, warehouse_slot():
        yield


@task(name="check-databases")
def check_databases(source_db: str, target_db: str) -> dict[str, Any]:
    """Load both blocks, then open both databases with ``SELECT 1``; returns the target's
    dialect (``target``: ``postgresql``, ``sqlite``, ...) and whether a window's GROUP BY
    on the source runs before its write needs the target (``overlaps``, see
    :func:`~shopfloor.aggregation.in_database.overlaps_source`).

    The one check a flow runs before its work: an unknown block fails first (one
    :class:`ShopfloorError` naming it, nothing connected), then a database that does
    not answer is named with its reason. Each block is loaded once, also when
    ``source_db`` and ``target_db`` are the same.

    Args:
        source_db: SqlAlchemyConnector block of the raw readings.
        target_db: SqlAlchemyConnector block of the hourly table.
    """
    names = tuple(dict.fromkeys((source_db, target_db)))
    engines = dict(zip(names, runtime.engines(*names), strict=True))
    for name, engine in engines.items():
        check_connection(engine, name)
    get_run_logger().info("databases %r and %r answer", source_db, target_db)
    source, target = engines[source_db], engines[target_db]
    return {"target": target.dialect.name, "overlaps": overlaps_source(source, target)}


@task(name="plan-late-data", **RETRIED)
def plan_late_data(source_db: str, target_db: str, timezone: str, watermark_name: str,
                   lateness_minutes: int = DEFAULT_LATENESS_MINUTES,
                   now: datetime | None = None) -> LatePlan:
    """Find the (location, hour) pairs that received readings since the watermark.

    By ``ingested_at``; where the raw table has none (``SHOPFLOOR_RAW_INGESTED_AT=false``),
    by reading time: rows read at most ``lateness_minutes`` before the watermark (see
    :mod:`shopfloor.aggregation.late`).

    Args:
        source_db: block of the raw readings.
        target_db: block holding the watermark.
        timezone: IANA zone of the hour buckets.
        watermark_name: the watermark to read.
        lateness_minutes: the allowance of the reading-time watermark.
        now: the run's logical time (reading-time watermark: the newest reading counted).
    """
    (source, target), tables = runtime.engines(source_db, target_db), runtime.tables()
    with target.connect() as conn:
        stored = get_watermark(conn, tables, watermark_name)
    since = datetime.fromisoformat(stored) if stored else None
    tz, logger = resolve_timezone(timezone), get_run_logger()
    if not tables.raw_has_ingested_at:
        lateness, now = timedelta(minutes=lateness_minutes), now or utcnow()
        with source_snapshot(source) as conn:
            plan = plan_late_by_capture(conn, tables, tz, since, lateness, now)
        logger.info("%d rows read since %s (watermark %s minus %d minutes; the raw table has "
                    "no ingested_at) touch %d (location, hour) pairs", plan.late_rows,
                    late_since(since, lateness, now), stored or "unset", lateness_minutes,
                    len(plan.pairs))
        return plan
    with source_snapshot(source) as conn:
        plan = plan_late(conn, tables, tz, since)
    logger.info(
        "%d rows ingested since %s (watermark %s minus %s) touch %d (location, hour) pairs",
        plan.late_rows, since - LATE_OVERLAP if since else "the beginning", stored or "unset",
        LATE_OVERLAP, len(plan.pairs))
    return plan


@task(name="read-watermark", **RETRIED)
def read_watermark(target_db: str, name: str) -> datetime | None:
    """The instant stored in watermark ``name`` on the target (None: never set).

    Args:
        target_db: block holding ``pipeline_watermark``.
        name: the watermark to read.
    """
    (target,) = runtime.engines(target_db)
    with target.connect() as conn:
        stored = get_watermark(conn, runtime.tables(), name)
    return datetime.fromisoformat(stored) if stored else None


@task(name="write-hourly")
def write_hourly(source_db: str, target_db: str, windows: list[Window], timezone: str,
                 watermarks: dict[str, datetime] | None = None,
                 ) -> tuple[WriteStats, list[dict[str, Any]]]:
    """Aggregate every window, upsert and validate it, then move the watermarks, in one
    target transaction.

    The path follows the blocks (``stats.path``): ``in-database`` when both name the
    same PostgreSQL or SQLite database (the backfill's rule), ``staged`` into another
    PostgreSQL or SQLite target (groups streamed in batches, bulk-loaded), ``portable``
    otherwise. Holds a slot of the warehouse limit while it writes. A watermark only
    moves forward: a late run of an older slot never moves one back. Not retried: a
    failed write leaves the watermarks, and the next run covers the same hours.

    Args:
        source_db: block of the raw readings.
        target_db: block of the hourly table.
        windows: the local-hour windows to aggregate.
        timezone: IANA zone of the hour buckets.
        watermarks: watermark name -> new value (None or empty: leave watermarks alone).

    Returns:
        The write statistics and the hourly rows of active locations.
    """
    (source, target), tables = runtime.engines(source_db, target_db), runtime.tables()
    stats, now = WriteStats(path=choose_path(source, target), run_id=runtime.run_id()), utcnow()
    with warehouse_slot(), target_transaction(target, stats.path) as conn:
        rows = write_windows(source, conn, tables, windows, resolve_timezone(timezone), now,
                             stats)
        for name, value in (watermarks or {}).items():
            if later(get_watermark(conn, tables, name), value):
                set_watermark(conn, tables, name, value.isoformat())
    get_run_logger().info("%d groups (%d raw rows) written %s: %d upserted, %d unchanged",
                          stats.groups, stats.raw_rows, stats.path, stats.upserted,
                          stats.unchanged)
    return stats, rows


@task(name="roll-up-tags", **RETRIED)
def roll_up_tags(source_db: str) -> dict[str, Any]:
    """Roll up ``tag_samples`` into ``tag_hourly`` and ``tag_daily`` on the source
    database itself (one GROUP BY there; see :mod:`shopfloor.aggregation.tag_rollup`):
    the (tag, hour) pairs that received rows since the ``tag-rollup`` watermark, and their
    days. Skipped where the database has no ``tag_samples``. Safe to retry: a rerun
    rewrites nothing that is already right.

    Args:
        source_db: SqlAlchemyConnector block of the database holding ``tag_samples``.

    Returns:
        The counters for the run's summary (``tag_rollup``, ``tag_hours_written``, ...).
    """
    (source,) = runtime.engines(source_db)
    stats = roll_up_database(source, runtime.tables(), utcnow())
    get_run_logger().info(
        "tag rollup (%s%s): %d samples, %d (tag, hour) groups (%d written), %d days "
        "(%d written)", stats.mode, f": {stats.reason}" if stats.reason else "",
        stats.samples, stats.hours, stats.hours_written, stats.days, stats.days_written)
    return stats.summary()


@task(name="aggregate-chunk", **RETRIED_ONCE)
def aggregate_chunk(source_db: str, target_db: str, window: Window, timezone: str,
                    queue: bool = False) -> tuple[WriteStats, list[Breach]]:
    """Aggregate one backfill chunk, commit it on its own and find its threshold breaches.

    The chunk holds a slot of the warehouse limit while it writes: on the piped staged
    path from the moment its GROUP BY on the source has its groups, otherwise from the
    start. With ``queue`` the run's chunks first take turns in this process, so one
    chunk aggregates on the source while another writes.

    Only counts and breaches are returned, so a backfill's memory does not grow with
    its range.

    Args:
        source_db: block of the raw readings.
        target_db: block of the hourly table.
        window: the chunk's local hours.
        timezone: IANA zone of the hour buckets.
        queue: take turns with the run's other chunks before asking for the slot.
    """
    (source, target), tables = runtime.engines(source_db, target_db), runtime.tables()
    # chunks take turns with the hourly run and master sync
    stats, rows = aggregate_and_write(source, target, tables, window,
                                      resolve_timezone(timezone), utcnow(), runtime.run_id(),
                                      turn=chunk_turn if queue else warehouse_slot)
    limits = {}
    if rows:  # rows of active locations only: none means no threshold to look up
        with target.connect() as conn:
            limits = load_thresholds(conn, tables, {r["loc_id"] for r in rows})
    breaches = find_breaches(rows, limits)
    get_run_logger().info("chunk %s (%s): %d groups, %d upserted, %d unchanged, %d breaches",
                          window.label(), stats.path, stats.groups, stats.upserted,
                          stats.unchanged, len(breaches))
    return stats, breaches


@task(name="find-threshold-breaches")
def find_threshold_breaches(target_db: str, rows: list[dict[str, Any]]) -> list[Breach]:
    """Compare hourly rows with the thresholds of their (active) locations.

    Args:
        target_db: block holding ``location``.
        rows: hourly rows.
    """
    if not rows:
        return []
    (target,) = runtime.engines(target_db)
    with target.connect() as conn:
        limits = load_thresholds(conn, runtime.tables(), {r["loc_id"] for r in rows})
    return find_breaches(rows, limits)


@task(name="emit-threshold-alerts")
def emit_threshold_alerts(breaches: list[Breach], timezone: str) -> int:
    """Emit one ``shopfloor.threshold.breached`` event per breached (location, hour).

    Args:
        breaches: the breaches to announce.
        timezone: zone of their ymd/hh, put in the payload.
    """
    logger, sent = get_run_logger(), 0
    grouped = by_hour(breaches)
    for (loc_id, ymd, hh), items in list(grouped.items())[:MAX_EVENTS]:
        emit_event(**breach_event(loc_id, ymd, hh, items, timezone))
        sent += 1
    if len(grouped) > MAX_EVENTS:
        logger.warning("%d breached hours, events sent for the first %d", len(grouped), sent)
    logger.info("%d threshold alert events emitted", sent)
    return sent


@task(name="sync-locations", **RETRIED)
def sync_locations(source_db: str, target_db: str, run_id: str | None) -> dict[str, Any]:
    """Upsert locations and thresholds into the target; deactivate the ones gone.

    Holds a slot of the warehouse limit while it writes. An empty source deactivates
    nothing: it fails instead (see :func:`~shopfloor.aggregation.locations.apply_locations`).

    Args:
        source_db: block with the master ``location`` table.
        target_db: block to sync into.
        run_id: flow run id for quarantine rows.
    """
    (source, target), tables = runtime.engines(source_db, target_db), runtime.tables()
    with source.connect() as conn:
        df = read_source_locations(conn, tables)
    result = validate_locations(df)
    with warehouse_slot(), target.begin() as conn:
        upserted, unchanged, gone = apply_locations(conn, tables, result.valid,
                                                    set(df["loc_id"].dropna()), utcnow())
        quarantined = write_quarantine(conn, tables, result.quarantined,
                                       "master-data-sync", run_id)
    logger = get_run_logger()
    logger.info("%d source locations: %d upserted, %d unchanged, %d deactivated, "
                "%d quarantined", len(df), upserted, unchanged, len(gone), quarantined)
    return {"source_rows": len(df), "upserted": upserted, "unchanged": unchanged,
            "deactivated": gone, "quarantined": quarantined}
