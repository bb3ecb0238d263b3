"""Task of the lake maintenance flow: merge one dataset's closed partitions."""

import uuid
from datetime import date, timedelta

from prefect import get_run_logger, task
from sqlalchemy import Engine

from shopfloor.compaction.faults import pause_hook_from_env
from shopfloor.db.engine import check_connection
from shopfloor.db.schema import Tables
from shopfloor.lake import claims
from shopfloor.lake.merge import MergeSpec, PartitionResult, maintain, no_hook
from tasks import runtime
from tasks.runtime import LIVE


@task(name="merge-partitions", **LIVE)
def merge_dataset(lake: str, prefix: str, metadata_db: str, today: date, grace_days: int,
                  target_file_mb: int, min_files: int, claim_ttl_minutes: int,
                  ram_limit: str, max_partitions: int, run_id: str) -> list[PartitionResult]:
    """Recover crashed merges of ``prefix``, then merge its closed partitions.

    No retries: a partition that failed is undone (or left for the next run to recover
    from its manifest) and reported; the next daily run tries again.

    Args:
        lake: storage block (S3Bucket or LocalFileSystem) of the lake.
        prefix: dataset folder inside the lake (``datalog_v2``, ``sensor_data``).
        metadata_db: database block of ``pipeline_watermark`` (the partition claims).
        today: the run's logical day; partitions older than ``today - grace_days`` close.
        grace_days: days a partition stays open to its writers.
        target_file_mb: size of the merged files.
        min_files: small files a partition needs before it is merged.
        claim_ttl_minutes: a partition claim not renewed for this long is taken over.
        ram_limit: DuckDB memory limit.
        max_partitions: most partitions merged per dataset and run.
        run_id: recorded in each merge's manifest.
    """
    logger = get_run_logger()
    engine = runtime.engine(metadata_db)
    check_connection(engine, metadata_db)
    tables = runtime.tables()
    spec = MergeSpec(runtime.storage(lake), prefix, engine, tables,
                     target_file_mb * 2**20, min_files,
                     timedelta(minutes=claim_ttl_minutes), ram_limit, run_id,
                     ended=_ended_holders(engine, tables))
    try:
        results = maintain(spec, today, grace_days, lambda: uuid.uuid4().hex,
                           max_partitions, pause_hook_from_env() or no_hook)
    finally:
        engine.dispose()
    for r in results:
        log = logger.warning if r.status == "failed" else logger.info
        log("%s %s: %s (%d files -> %d, %d rows) %s", r.status, r.partition, r.message,
            r.files_in, r.files_out, r.rows, r.unified)
    return results


def _ended_holders(engine: Engine, tables: Tables) -> tuple[str, ...]:
    """The partition claims held by runs Prefect knows are over (a run crashed, or failed
    while the metadata database was away and could not give its claims back): taken at
    once, not after ``claim_ttl_minutes``. One API call for every claimer."""
    holding = claims.runs_holding(engine, tables)
    try:
        ended = runtime.ended_runs(sorted(holding))
    except Exception as exc:  # not asking costs only the wait: the TTL still frees them
        get_run_logger().warning("could not ask which claimers ended (%s); their claims "
                                 "wait for the TTL", exc)
        return ()
    if ended:
        get_run_logger().warning("partition claims of %d ended runs are taken over now: %s",
                                 len(ended), ", ".join(ended))
    return tuple(sorted(v for run in ended for v in holding[run]))
