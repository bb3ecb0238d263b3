"""Lake maintenance: merge the small Parquet files of closed partitions, daily."""

from datetime import timedelta
from typing import Annotated, Any

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run
from pydantic import Field

from shopfloor.compaction.layout import check_target_prefix
from shopfloor.errors import ShopfloorError
from shopfloor.lake.merge import PartitionResult
from shopfloor.params import RamLimit, StoragePrefix
from tasks.clock import logical_now
from tasks.lake_maintenance import merge_dataset
from tasks.outcomes import ON_FAILURE, degraded, idle

GraceDays = Annotated[int, Field(ge=1, le=366)]
TargetFileMb = Annotated[int, Field(ge=1, le=4096)]
MinFiles = Annotated[int, Field(ge=2, le=100_000)]
ClaimTtlMinutes = Annotated[int, Field(ge=0)]
MaxPartitions = Annotated[int, Field(ge=1, le=100_000)]
DEFAULT_PREFIXES = ["datalog_v2", "sensor_data"]


def summarise(results: list[PartitionResult]) -> dict[str, Any]:
    """Counts over every partition touched."""
    merged = [r for r in results if r.status == "merged"]
    return {
        "partitions_merged": len(merged),
        "partitions_skipped": sum(r.status == "skipped" for r in results),
        "partitions_failed": sum(r.status == "failed" for r in results),
        "recovered": sum(len(r.recovered) for r in results),
        "files_in": sum(r.files_in for r in merged),
        "files_out": sum(r.files_out for r in merged),
        "rows": sum(r.rows for r in merged),
        "bytes_in": sum(r.bytes_in for r in merged),
        "bytes_out": sum(r.bytes_out for r in merged),
    }


@flow(name="lake-maintenance", timeout_seconds=3 * 3600, on_failure=ON_FAILURE)
def lake_maintenance(
    lake: str = "shopfloor-lake",
    prefixes: list[StoragePrefix] = DEFAULT_PREFIXES,  # noqa: B006 - Prefect copies defaults
    grace_days: GraceDays = 3,
    target_file_mb: TargetFileMb = 128,
    min_files: MinFiles = 2,
    metadata_db: str = "shopfloor-metadata-db",
    claim_ttl_minutes: ClaimTtlMinutes = 60,
    ram_limit: RamLimit = "2GB",
    max_partitions_per_prefix: MaxPartitions = 1000,
) -> dict[str, Any]:
    """Merge the small files of closed partitions into files of ``target_file_mb``.

    For each dataset prefix (the compaction output ``datalog_v2``, the Spark output
    ``sensor_data``), partitions whose day (``hiveperiod=`` / ``date=``) is older than the
    run's day minus ``grace_days`` and that hold at least ``min_files`` small files are
    merged, exactly once, under a claim in the metadata database; merges a crashed run
    left are rolled forward or back first. Readers that go through
    ``shopfloor.lake.protocol.read_partition`` see every row exactly once meanwhile
    (docs/lake_maintenance.md). Ends ``Idle`` when nothing was due, ``Degraded`` when some
    partitions failed, Failed when every partition tried failed.

    Args:
        lake: S3Bucket or LocalFileSystem block of the lake.
        prefixes: dataset folders inside the lake.
        grace_days: days a partition stays open to its writers (keep it above the
            extraction's late-data re-check window).
        target_file_mb: size of the merged files (measured on the input bytes).
        min_files: small files (under half the target) a partition needs to be merged.
        metadata_db: database block of ``pipeline_watermark`` (the partition claims).
        claim_ttl_minutes: a partition claim not renewed for this long is taken over.
        ram_limit: DuckDB memory limit of a merge.
        max_partitions_per_prefix: most partitions merged per prefix and run.
    """
    today = logical_now().date()
    run_id = str(flow_run.get_id() or "")
    results: list[PartitionResult] = []
    for prefix in prefixes:
        results += merge_dataset(lake, check_target_prefix(prefix), metadata_db, today,
                                 grace_days, target_file_mb, min_files, claim_ttl_minutes,
                                 ram_limit, max_partitions_per_prefix, run_id)
    summary = summarise(results)
    rows = [r.row() for r in results] or [{"partition": "(none)", "status": "nothing due"}]
    create_table_artifact(rows, key="lake-maintenance",
                          description=f"Closed before {today - timedelta(days=grace_days)}: "
                          f"{summary['partitions_merged']} merged "
                          f"({summary['files_in']} files -> {summary['files_out']}), "
                          f"{summary['partitions_failed']} failed")
    failed = summary["partitions_failed"]
    if failed and failed == len([r for r in results if r.status != "skipped"]):
        raise ShopfloorError(f"every partition tried failed ({failed}): "
                             + "; ".join(r.message for r in results if r.status == "failed")[:500])
    if failed:
        return degraded(summary, f"{failed} partitions failed, "
                                 f"{summary['partitions_merged']} merged")
    if not summary["partitions_merged"] and not summary["recovered"]:
        return idle(summary, "no closed partition with small files")
    return summary
