"""Tasks of the S3 compaction flows: register keys, get_keys -> compact -> update_status."""

from datetime import timedelta

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from blocks.resolve import load_engine, load_storage
from shopfloor.compaction import output
from shopfloor.compaction.claims import ClaimedKey, claim_keys, release_claim
from shopfloor.compaction.compact import CompactionSpec, CompactResult, compact_claim, no_hook
from shopfloor.compaction.faults import pause_hook_from_env
from shopfloor.compaction.keys import register_keys, registry_rows
from shopfloor.compaction.layout import ClaimLayout
from shopfloor.compaction.status import record_outcome
from shopfloor.db.engine import check_connection
from shopfloor.db.schema import configured_tables
from shopfloor.db.types import utcnow


@task(name="register-keys", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def register_new_keys(raw_logs: str, prefix: str, distrik: str | None,
                      metadata_db: str) -> dict[str, int]:
    """List the objects under ``prefix`` and insert the new JSON ones as PENDING.

    Args:
        raw_logs: storage block (S3Bucket or LocalFileSystem) of the raw JSON.
        prefix: folder inside the storage to list.
        distrik: distrik of every listed key; ``None`` takes it from the key layout.
        metadata_db: SqlAlchemyConnector block holding ``s3_object``.
    """
    logger = get_run_logger()
    engine = load_engine(metadata_db)
    check_connection(engine, metadata_db)
    objects = list(load_storage(raw_logs).list_objects(prefix))
    rows, unknown = registry_rows(objects, distrik, utcnow())
    with engine.begin() as conn:
        new = register_keys(conn, configured_tables(), rows)
    if unknown:
        logger.warning("%d keys name no distrik (e.g. %r): pass distrik= to register them",
                       len(unknown), unknown[0])
    logger.info("listed %d objects, %d JSON, %d new", len(objects), len(rows), new)
    return {"listed": len(objects), "json": len(rows), "new": new,
            "known": len(rows) - new, "no_distrik": len(unknown)}


@task(name="check-storage", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def check_storage(*blocks: str) -> None:
    """Fail with one line naming the block if its bucket is missing or refuses us, before
    any key is claimed (a missing bucket is a setting to fix, not a bad object)."""
    for name in dict.fromkeys(blocks):
        load_storage(name).check_exists(name)


@task(name="get-keys", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def get_keys(metadata_db: str, distrik: str, limit: int, run_id: str,
             claim_ttl_minutes: int) -> list[ClaimedKey]:
    """Claim up to ``limit`` PENDING (or stale) keys of ``distrik`` for this run, atomically.

    Args:
        metadata_db: SqlAlchemyConnector block holding ``s3_object``.
        distrik: district whose keys to claim.
        limit: most keys to claim.
        run_id: this flow run's id, written on every claimed key.
        claim_ttl_minutes: claims older than this are taken over.
    """
    engine = load_engine(metadata_db)
    check_connection(engine, metadata_db)
    claimed = claim_keys(engine, configured_tables(), distrik, limit, run_id,
                         timedelta(minutes=claim_ttl_minutes))
    stale = sorted({c.previous_run_id for c in claimed
                    if c.previous_run_id and c.previous_run_id != run_id})
    get_run_logger().info("claimed %d keys of %s%s", len(claimed), distrik,
                          f" (taken over from {len(stale)} unfinished runs)" if stale else "")
    return claimed


@task(name="compact", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def compact(raw_logs: str, lake: str, target_prefix: str, distrik: str,
            tz_offset_hours: float, ram_limit: str, run_id: str,
            claimed: list[ClaimedKey]) -> CompactResult:
    """DuckDB: the claimed JSON objects -> Parquet partitioned by hiveperiod and dstrct_code.

    Args:
        raw_logs: storage block (S3Bucket or LocalFileSystem) of the raw JSON.
        lake: storage block the Parquet goes to.
        target_prefix: folder inside the lake for the partitions.
        distrik: partition value of records without ``dstrct_code``.
        tz_offset_hours: offset of ``datetime_wita`` from UTC.
        ram_limit: DuckDB memory limit.
        run_id: the claim token; output file names derive from it.
        claimed: the keys claimed by ``get_keys``.
    """
    spec = CompactionSpec(load_storage(raw_logs), load_storage(lake), target_prefix, distrik,
                          tz_offset_hours, ram_limit)
    layout = ClaimLayout(spec.lake, target_prefix, run_id)
    # Fault injection (docs/s3_compaction.md): nothing is wired in unless the setting is on.
    hook = pause_hook_from_env() or no_hook
    result = compact_claim(spec, layout, claimed, hook)
    logger = get_run_logger()
    for key, reason in result.quarantined.items():
        logger.warning("object %r quarantined: %s", key, reason)
    logger.info("%d rows in, %d rows out, %d Parquet files", result.rows_in, result.rows_out,
                len(result.files))
    return result


@task(name="update-status", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def update_status(metadata_db: str, lake: str, target_prefix: str, run_id: str,
                  result: CompactResult) -> int:
    """Mark written keys SUCCESS and malformed ones QUARANTINED; store bad records.

    Args:
        metadata_db: SqlAlchemyConnector block holding ``s3_object`` and ``quarantine``.
        lake: storage block the output went to (its manifest is dropped once keys are
            SUCCESS).
        target_prefix: folder inside the lake of the partitions.
        run_id: the claim token.
        result: what ``compact`` produced.
    """
    with load_engine(metadata_db).begin() as conn:
        _, bad = record_outcome(conn, configured_tables(), run_id, result.succeeded,
                                result.quarantined, result.bad_records)
    output.forget_manifest(ClaimLayout(load_storage(lake), target_prefix, run_id))
    get_run_logger().info("%d keys SUCCESS, %d QUARANTINED, %d bad records quarantined",
                          len(result.succeeded), len(result.quarantined), bad)
    return bad


@task(name="release-keys", cache_policy=NO_CACHE)
def release_keys(metadata_db: str, run_id: str, error: str) -> int:
    """Give this run's unfinished keys back to PENDING (FAILED after too many attempts).

    Args:
        metadata_db: SqlAlchemyConnector block holding ``s3_object``.
        run_id: the claim token.
        error: why the run gave up, stored on the keys.
    """
    with load_engine(metadata_db).begin() as conn:
        n = release_claim(conn, configured_tables(), run_id, error)
    get_run_logger().warning("released %d keys: %s", n, error)
    return n
