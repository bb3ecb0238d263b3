"""Lake maintenance: merge the small Parquet files of closed partitions, daily."""

from datetime import timedelta
from typing import Annotated, Any

from prefect import flow
from prefect.artifacts import create_table_artifact
from pydantic import Field

from shopfloor.compaction.layout import check_target_prefix
from shopfloor.lake.merge import PartitionResult
from shopfloor.lake.outcome import artifact_rows, description, summarise, verdict
from shopfloor.params import RamLimit, StoragePrefix
from tasks import runtime
from tasks.lake_maintenance import merge_dataset
from tasks.outcomes import ON_FAILURE, conclude

GraceDays = Annotated[int, Field(ge=1, le=366)]
TargetFileMb = Annotated[int, Field(ge=1, le=4096)]
MinFiles = Annotated[int, Field(ge=2, le=100_000)]
ClaimTtlMinutes = Annotated[int, Field(ge=0)]
MaxPartitions = Annotated[int, Field(ge=1, le=100_000)]
DEFAULT_PREFIXES = ["datalog_v2", "sensor_data", "tag_samples"]


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
    ``sensor_data``, the tag lake export's ``tag_samples``), partitions whose day
    (``hiveperiod=`` / ``date=``, or the last day of a ``month=``) is older than the
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
    today = runtime.logical_now().date()
    run_id = runtime.run_id() or ""
    results: list[PartitionResult] = []
    for prefix in prefixes:
        results += merge_dataset(lake, check_target_prefix(prefix), metadata_db, today,
                                 grace_days, target_file_mb, min_files, claim_ttl_minutes,
                                 ram_limit, max_partitions_per_prefix, run_id)
    summary = summarise(results)
    create_table_artifact(artifact_rows(results), key="lake-maintenance",
                          description=description(summary,
                                                  today - timedelta(days=grace_days)))
    return conclude(verdict(results, summary), summary)
