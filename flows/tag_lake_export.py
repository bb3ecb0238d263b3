"""Flow ``tag-lake-export``: the warehouse's tag samples into the lake, long format."""

from typing import Annotated, Any

from prefect import flow
from prefect.artifacts import create_table_artifact
from pydantic import Field

from shopfloor.historian.publish import new_token
from shopfloor.params import BlockName, StoragePrefix
from shopfloor.tags.lake_export import DEFAULT_PREFIX, export_rows, export_verdict
from tasks import runtime
from tasks.outcomes import ON_FAILURE, conclude
from tasks.tag_lake import export_tag_samples

LagMinutes = Annotated[int, Field(ge=0, le=24 * 60)]


@flow(name="tag-lake-export", timeout_seconds=3 * 3600, on_failure=ON_FAILURE)
def tag_lake_export(
    warehouse_db: BlockName = "shopfloor-warehouse-db",
    lake: BlockName = "shopfloor-lake",
    prefix: StoragePrefix = DEFAULT_PREFIX,
    lag_minutes: LagMinutes = 5,
) -> dict[str, Any]:
    """Export the tag samples ingested since the last run to the lake, exactly once.

    Writes ``<prefix>/tag_id=<id>/month=<YYYY-MM>/part-*.parquet`` (columns tag_id, ts,
    value, text_value, quality, reason, ingested_at): the samples with ``ingested_at``
    after the watermark and up to the run's time less ``lag_minutes``, late ones of an
    old month included. A replayed sample replaces its earlier version; readers that go
    through ``shopfloor.lake.protocol`` see each (tag_id, ts) once, also after a crash at
    any point (docs/tags.md). Ends ``Idle`` when nothing was ingested since the last run.

    Args:
        warehouse_db: SqlAlchemyConnector block of the database with ``tag_samples``.
        lake: S3Bucket or LocalFileSystem block of the lake.
        prefix: dataset folder inside the lake.
        lag_minutes: samples ingested in the last minutes are left for the next run
            (writers whose transactions are still open).
    """
    token = new_token(runtime.run_id())
    stats = export_tag_samples(warehouse_db, lake, prefix, runtime.logical_now(),
                               lag_minutes, token)
    create_table_artifact(export_rows(stats), key="tag-lake-export",
                          description=f"Tag samples into {prefix}/ (token {token})")
    return conclude(export_verdict(stats), stats.summary())
