"""S3 compaction (seed s3_datalog_processor): register keys, then get_keys -> compact ->
update_status, exactly once."""

import time
import uuid
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.runtime import flow_run
from pydantic import Field

from blocks.resolve import require_blocks
from shopfloor.compaction.compact import CompactResult
from shopfloor.compaction.faults import pause_hook_from_env
from shopfloor.compaction.keys import check_prefix
from shopfloor.params import (
    DistrictCode,
    OptionalStoragePrefix,
    RamLimit,
    StoragePrefix,
)
from tasks.s3_compaction import (
    check_storage,
    compact,
    get_keys,
    register_new_keys,
    release_keys,
    update_status,
)

MAX_KEYS_PER_RUN = 100_000

KeyLimit = Annotated[int, Field(ge=1, le=MAX_KEYS_PER_RUN)]
TzOffsetHours = Annotated[float, Field(ge=-14, le=14)]
ClaimTtlMinutes = Annotated[int, Field(ge=0)]


def _run_id() -> str:
    # The flow run id is the claim token; a plain call outside Prefect still gets one.
    return str(flow_run.get_id() or uuid.uuid4())


@flow(name="register-s3-keys")
def register_s3_keys(
    raw_logs: str = "shopfloor-raw-logs",
    prefix: OptionalStoragePrefix = "",
    distrik: DistrictCode | None = None,
    metadata_db: str = "shopfloor-metadata-db",
) -> dict[str, int]:
    """List the raw JSON objects under a prefix and register the new ones as PENDING.

    Idempotent: keys already registered are left as they are.

    Args:
        raw_logs: S3Bucket or LocalFileSystem block where the raw JSON lands.
        prefix: folder inside the raw logs to list ("" lists everything).
        distrik: district of every listed key; none takes it from the key layout
            (``distrik=XXXX/`` or a leading ``XXXX/`` folder).
        metadata_db: SqlAlchemyConnector block holding the ``s3_object`` registry.
    """
    prefix = check_prefix(prefix)  # without the trailing "/"; the type refused the rest
    counts = register_new_keys(raw_logs, prefix, distrik, metadata_db)
    create_table_artifact([{"metric": k, "value": v} for k, v in counts.items()],
                          key="register-s3-keys",
                          description=f"Keys under {prefix or '(all)'!r} of {raw_logs}")
    return counts


def _summary(distrik: str, claimed: int, result: CompactResult | None,
             seconds: float) -> dict[str, Any]:
    r = result or CompactResult()
    return {
        "distrik": distrik, "keys_claimed": claimed, "keys_succeeded": len(r.succeeded),
        "keys_quarantined": len(r.quarantined),
        "records_quarantined": sum(len(v) for v in r.bad_records.values()),
        "rows_in": r.rows_in, "rows_out": r.rows_out, "bytes_in": r.bytes_in,
        "bytes_out": r.bytes_out,
        "parquet_files": len(r.files), "duration_s": round(seconds, 2),
    }


@flow(name="s3-compaction")
def s3_compaction(
    distrik: DistrictCode = "BRCB",
    key_limit_per_run: KeyLimit = 1000,
    ram_limit: RamLimit = "10GB",
    raw_logs: str = "shopfloor-raw-logs",
    lake: str = "shopfloor-lake",
    target_prefix: StoragePrefix = "datalog_v2",
    metadata_db: str = "shopfloor-metadata-db",
    tz_offset_hours: TzOffsetHours = 8,
    claim_ttl_minutes: ClaimTtlMinutes = 60,
) -> dict[str, Any]:
    """Compact claimed raw JSON objects into Parquet partitioned by hiveperiod and dstrct_code.

    get_keys claims keys with this run's id, compact writes their records once (output
    names derive from the claim, so retries and take-overs replace instead of adding),
    update_status marks them SUCCESS or QUARANTINED. Safe to run concurrently.

    Args:
        distrik: district whose PENDING keys to compact (and the partition value of
            records without ``dstrct_code``).
        key_limit_per_run: most keys one run claims.
        ram_limit: DuckDB memory limit (e.g. "10GB"); larger batches spill to disk.
        raw_logs: S3Bucket or LocalFileSystem block holding the raw JSON.
        lake: S3Bucket or LocalFileSystem block the Parquet goes to.
        target_prefix: folder inside the lake for the partitions.
        metadata_db: SqlAlchemyConnector block holding ``s3_object`` and ``quarantine``.
        tz_offset_hours: offset of ``datetime_wita`` from UTC (8 = WITA).
        claim_ttl_minutes: a claim older than this is taken over by the next run.
    """
    started = time.monotonic()
    logger = get_run_logger()
    # One check of the three block names, before any claim; the tasks resolve them.
    require_blocks(raw_logs, lake, metadata_db)
    check_storage(raw_logs, lake)
    pause = pause_hook_from_env()  # fault injection, docs/s3_compaction.md; normally None
    run_id = _run_id()
    progress = create_progress_artifact(0.0, key="s3-compaction-progress",
                                        description=f"s3-compaction of {distrik}")
    claimed = get_keys(metadata_db, distrik, key_limit_per_run, run_id, claim_ttl_minutes)
    result = None
    if not claimed:
        logger.info("nothing to do: no PENDING keys for distrik %s", distrik)
    else:
        update_progress_artifact(progress, 33.0)
        try:
            result = compact(raw_logs, lake, target_prefix, distrik, tz_offset_hours,
                             ram_limit, run_id, claimed)
            if pause:
                pause("after_compact")
            update_progress_artifact(progress, 66.0)
            update_status(metadata_db, lake, target_prefix, run_id, result)
        except Exception as exc:
            release_keys(metadata_db, run_id, f"{type(exc).__name__}: {exc}")
            raise
    update_progress_artifact(progress, 100.0)
    summary = _summary(distrik, len(claimed), result, time.monotonic() - started)
    create_table_artifact(
        [{"metric": k, "value": v} for k, v in summary.items()], key="s3-compaction",
        description="nothing to do: no PENDING keys" if not claimed else
        f"s3-compaction of {distrik} into {target_prefix}")
    return summary
