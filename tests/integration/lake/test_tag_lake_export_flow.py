"""The tag-lake-export flow on blocks: the embedded defaults (SQLite warehouse, a local
folder lake) and PostgreSQL with moto's S3; its artifact; Idle when nothing is new."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from prefect.filesystems import LocalFileSystem

from blocks.bootstrap import connector_from_url
from flows.tag_lake_export import tag_lake_export
from shopfloor.db.engine import init_db, make_engine
from shopfloor.storage import StorageLocation
from shopfloor.tags.lake_export import month_of
from tests.pg import throwaway_database

from .test_tag_lake_export import assert_exactly_once, samples, write


def artifact_rows(state) -> list[dict]:
    """The rows of the run's ``tag-lake-export`` table artifact."""
    with get_client(sync_client=True) as client:
        (art,) = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["tag-lake-export"]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    return json.loads(art.data) if isinstance(art.data, str) else art.data


def _s3_lake(endpoint: str, bucket: str) -> StorageLocation:
    from prefect_aws import AwsCredentials, S3Bucket
    from prefect_aws.client_parameters import AwsClientParameters

    from shopfloor.storage import S3Credentials

    creds = AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing",
                           region_name="us-east-1",
                           aws_client_parameters=AwsClientParameters(endpoint_url=endpoint))
    S3Bucket(bucket_name=bucket, bucket_folder="lake", credentials=creds).save(
        "tle-lake", overwrite=True)
    return StorageLocation("s3", bucket, "lake",
                           S3Credentials("testing", "testing", None, "us-east-1", endpoint))


@pytest.mark.parametrize("kind", ["sqlite-local", "postgresql-s3"])
def test_the_flow_exports_new_samples_once_then_is_idle(kind, request, tmp_path,
                                                        prefect_harness):
    if kind == "sqlite-local":
        url = request.getfixturevalue("sqlite_url")
        LocalFileSystem(basepath=str(tmp_path / "lake")).save("tle-lake", overwrite=True)
        lake = StorageLocation("local", str(tmp_path / "lake"))
        stack = None
    else:
        stack = throwaway_database(request.getfixturevalue("pg_server_url"))
        url = stack.__enter__()
        lake = _s3_lake(request.getfixturevalue("s3_endpoint"),
                        request.getfixturevalue("s3_bucket"))
    engine = make_engine(url)
    try:
        tables = init_db(engine)
        connector_from_url(url).save("tle-warehouse", overwrite=True)
        now = datetime.now(UTC)
        # Samples from the start of an hour: their 8 minutes never straddle two months.
        base = (now - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
        write(engine, tables, samples([5, 6], base, 100,
                                      now - timedelta(hours=1), seed=11))
        state = tag_lake_export(warehouse_db="tle-warehouse", lake="tle-lake",
                                return_state=True)
        summary = state.result()
        assert state.name == "Completed"
        assert (summary["samples"], summary["tags"], summary["partitions"]) == (200, 2, 2)
        total, *parts = artifact_rows(state)
        assert (total["samples"], total["tags"], total["partitions"], total["files"]) == (
            200, 2, 2, 2)
        assert sorted(p["partition"] for p in parts) == [
            f"tag_samples/tag_id={t}/month={month_of(base)}"
            for t in (5, 6)]
        assert_exactly_once(lake, engine, tables, now - timedelta(minutes=5))
        # A replay of ten samples (new values, ingested now): upserted, still once each.
        write(engine, tables, samples([5], base, 10,
                                      datetime.now(UTC), seed=12))
        summary = tag_lake_export(warehouse_db="tle-warehouse", lake="tle-lake",
                                  lag_minutes=0)
        assert (summary["samples"], summary["upserted"]) == (10, 1)
        assert_exactly_once(lake, engine, tables, datetime.now(UTC))
        again = tag_lake_export(warehouse_db="tle-warehouse", lake="tle-lake",
                                lag_minutes=0, return_state=True)
        assert again.name == "Idle"
    finally:
        engine.dispose()
        if stack is not None:
            stack.__exit__(None, None, None)
