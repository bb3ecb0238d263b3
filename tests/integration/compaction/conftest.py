"""Fixtures of the compaction tests: a registry in PostgreSQL, raw/lake storage."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem
from sqlalchemy import Engine, delete

from blocks.bootstrap import connector_from_url
from shopfloor.db.engine import init_db
from shopfloor.db.schema import Tables
from shopfloor.storage import S3Credentials, StorageLocation

from .helpers import META, save_s3_blocks


@pytest.fixture(scope="session")
def registry_tables(pg_engine: Engine) -> Tables:
    return init_db(pg_engine)


@pytest.fixture
def registry(pg_engine: Engine, registry_tables: Tables) -> Iterator[Tables]:
    """An empty ``s3_object`` registry and ``quarantine`` table in PostgreSQL."""
    with pg_engine.begin() as conn:
        conn.execute(delete(registry_tables.s3_object))
        conn.execute(delete(registry_tables.quarantine))
        conn.execute(delete(registry_tables.quality_score))
    yield registry_tables


@pytest.fixture
def local_storage(tmp_path: Path) -> tuple[StorageLocation, StorageLocation]:
    """Raw logs and lake as local folders (the embedded default)."""
    return StorageLocation("local", str(tmp_path / "raw")), StorageLocation(
        "local", str(tmp_path / "lake"))


@pytest.fixture
def s3_storage(s3_endpoint: str, s3_bucket: str) -> tuple[StorageLocation, StorageLocation]:
    """Raw logs and lake as two prefixes of one bucket on moto's S3 server."""
    creds = S3Credentials("testing", "testing", None, "us-east-1", s3_endpoint)
    return (StorageLocation("s3", s3_bucket, "raw", creds),
            StorageLocation("s3", s3_bucket, "lake", creds))


@pytest.fixture
def write_objects() -> Callable[[StorageLocation, dict[str, bytes]], None]:
    def write(location: StorageLocation, objects: dict[str, bytes]) -> None:
        for key, data in objects.items():
            location.write_bytes(key, data)
    return write





@pytest.fixture(scope="module")
def meta_block(pg_url: str, prefect_harness: None) -> str:
    connector_from_url(pg_url).save(META, overwrite=True)
    return META


@pytest.fixture
def s3_blocks(s3_endpoint: str, s3_bucket: str, prefect_harness: None):
    return save_s3_blocks(s3_endpoint, s3_bucket, "cmp")


@pytest.fixture
def local_blocks(tmp_path: Path, prefect_harness: None):
    LocalFileSystem(basepath=str(tmp_path / "raw")).save("cmp-raw-local", overwrite=True)
    LocalFileSystem(basepath=str(tmp_path / "lake")).save("cmp-lake-local", overwrite=True)
    return (StorageLocation("local", str(tmp_path / "raw")),
            StorageLocation("local", str(tmp_path / "lake")))
