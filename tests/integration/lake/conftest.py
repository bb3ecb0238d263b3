"""Fixtures of the lake maintenance tests: a lake (local folder or moto S3), a metadata
database for the partition claims, and small Parquet files whose schema drifts."""

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shopfloor.db.engine import init_db, make_engine
from shopfloor.lake.merge import MergeSpec
from shopfloor.storage import S3Credentials, StorageLocation

PREFIX = "datalog_v2"
PARTITION = f"{PREFIX}/hiveperiod=2026-01-05/dstrct_code=BRCB"
TODAY = date(2026, 1, 20)


@pytest.fixture(params=["local", "s3"])
def lake(request, tmp_path: Path) -> StorageLocation:
    if request.param == "local":
        return StorageLocation("local", str(tmp_path / "lake"))
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return StorageLocation("s3", bucket, "lake",
                           S3Credentials("testing", "testing", None, "us-east-1", endpoint))


@pytest.fixture
def meta(sqlite_url: str):
    engine = make_engine(sqlite_url)
    yield engine, init_db(engine)
    engine.dispose()


@pytest.fixture
def spec(lake, meta) -> Callable[..., MergeSpec]:
    def make(**kw) -> MergeSpec:
        engine, tables = meta
        kw.setdefault("target_bytes", 64 * 2**20)
        kw.setdefault("claim_ttl", timedelta(minutes=60))
        return MergeSpec(lake, kw.pop("prefix", PREFIX), engine, tables, **kw)
    return make


def batch(ids: range, drift: int) -> pa.Table:
    """Rows of one compaction batch; later batches add a field and turn one into text."""
    cols = {"id": pa.array(list(ids), pa.int64()),
            "heartbeat": (pa.array([1.7e9 + i for i in ids], pa.float64()) if drift
                          else pa.array([1_700_000_000 + i for i in ids], pa.int32())),
            "temperature": pa.array([20.0 + i % 7 for i in ids], pa.float64())}
    if drift >= 1:
        cols["extra"] = pa.array([f"x{i}" for i in ids], pa.string())
    cols["mode"] = (pa.array([f"m{i % 3}" for i in ids]) if drift >= 2
                    else pa.array([i % 3 for i in ids], pa.int64()))
    return pa.table(cols)


def write_files(lake: StorageLocation, partition: str, n_files: int, rows: int = 5,
                start: int = 0, run: str = "r") -> list[int]:
    """``n_files`` small files in ``partition``, drifting schema by thirds; returns ids."""
    fs = lake.arrow_filesystem()
    ids: list[int] = []
    for n in range(n_files):
        r = range(start + n * rows, start + (n + 1) * rows)
        key = f"{partition}/part-{run}.BRCB-{n}.parquet"
        lake.make_parent(key)
        pq.write_table(batch(r, 3 * n // max(n_files, 1)), lake.path(key), filesystem=fs)
        ids.extend(r)
    return ids
