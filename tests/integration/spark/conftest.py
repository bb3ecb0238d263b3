"""One local Spark session for the whole test session, and a seeded PostgreSQL historian."""

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from prefect.filesystems import LocalFileSystem
from sqlalchemy import Engine

from blocks.bootstrap import connector_from_url
from shopfloor.db.schema import Tables, get_tables
from shopfloor.historian.seed import HistorianSeed, seed_historian
from shopfloor.spark.session import local_worker_python, session_conf

# Two months with a boundary in the middle: 2026-01-30 .. 2026-02-03 (exclusive), 20 tags,
# a reading per tag per hour, every 10th reading bad.
SEED = HistorianSeed(start=datetime(2026, 1, 30, tzinfo=UTC),
                     end=datetime(2026, 2, 3, tzinfo=UTC), n_tags=20, interval_s=3600)


@pytest.fixture(scope="session")
def spark() -> Iterator:
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", local_worker_python("local[2]", {}))
    builder = SparkSession.builder.master("local[2]").appName("shopfloor-tests")
    conf = session_conf("postgresql", {}) | {
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "4",
        "spark.driver.memory": "1g",
    }
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    yield session
    session.stop()


@pytest.fixture(scope="session")
def historian_tables() -> Tables:
    return get_tables(None)


@pytest.fixture(scope="session")
def historian_pg(pg_engine: Engine, historian_tables: Tables) -> Engine:
    """The seeded historian in the session's PostgreSQL database."""
    seed_historian(pg_engine, historian_tables, SEED)
    return pg_engine


@pytest.fixture(scope="session")
def historian_block(prefect_harness, pg_url: str, historian_pg: Engine) -> str:
    name = f"hist-pg-{uuid.uuid4().hex[:8]}"
    connector_from_url(pg_url).save(name, overwrite=True)
    return name


@pytest.fixture
def lake_block(prefect_harness, tmp_path) -> tuple[str, str]:
    """A new LocalFileSystem lake: ``(block name, folder)``."""
    name = f"lake-{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "lake"
    folder.mkdir()
    LocalFileSystem(basepath=str(folder)).save(name, overwrite=True)
    return name, str(folder)
