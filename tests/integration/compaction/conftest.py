"""Fixtures of the compaction tests: a registry in PostgreSQL, raw/lake storage."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete

from shopfloor.db.engine import init_db
from shopfloor.db.schema import Tables
from shopfloor.storage import S3Credentials, StorageLocation


@pytest.fixture(scope="session")
def registry_tables(pg_engine: Engine) -> Tables:
    return init_db(pg_engine)


@pytest.fixture
def registry(pg_engine: Engine, registry_tables: Tables) -> Iterator[Tables]:
    """An empty ``s3_object`` registry and ``quarantine`` table in PostgreSQL."""
    with pg_engine.begin() as conn:
        conn.execute(delete(registry_tables.s3_object))
        conn.execute(delete(registry_tables.quarantine))
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
