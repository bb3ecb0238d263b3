"""Task of the tag-lake-export flow: the warehouse's tag samples into the lake."""

from datetime import datetime, timedelta

from prefect import get_run_logger, task

from shopfloor.compaction.faults import pause_hook_from_env
from shopfloor.db.engine import check_connection
from shopfloor.tags.lake_export import ExportStats, export
from tasks import runtime
from tasks.runtime import LIVE


@task(name="export-tag-samples", **LIVE)
def export_tag_samples(warehouse_db: str, lake: str, prefix: str, now: datetime,
                       lag_minutes: int, token: str) -> ExportStats:
    """Export the samples ingested since the last run's watermark to ``prefix``.

    No retries: a failed run leaves the lake as it was (or a manifest the next run rolls
    forward) and the watermark where it was; the next run exports the same samples again
    without duplicating any (docs/tags.md).

    Args:
        warehouse_db: database block holding ``tag_samples`` and the watermark.
        lake: storage block (S3Bucket or LocalFileSystem) of the lake.
        prefix: dataset folder inside the lake.
        now: the run's time; samples ingested up to ``now - lag_minutes`` are exported.
        lag_minutes: safety lag for writers whose transactions are still open.
        token: names this run's files and manifest.
    """
    logger = get_run_logger()
    engine = runtime.engine(warehouse_db)
    check_connection(engine, warehouse_db)
    hook = pause_hook_from_env()
    try:
        stats = export(engine, runtime.tables(), runtime.storage(lake), prefix, now, token,
                       timedelta(minutes=lag_minutes), hook or (lambda step: None))
    finally:
        engine.dispose()
    if stats.recovered:
        logger.warning("rolled forward %d export(s) a crashed run left", stats.recovered)
    logger.info("%d samples of %d tags into %d partitions (%d appended, %d upserted), "
                "watermark %s", stats.samples, stats.tags, stats.partitions, stats.appended,
                stats.upserted, stats.watermark)
    return stats
