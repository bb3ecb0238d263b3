"""Helpers of the compaction tests: generated telemetry and what the lake holds."""

import json
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from shopfloor.compaction.duck import connect
from shopfloor.db.schema import Tables
from shopfloor.storage import StorageLocation

META = "cmp-meta"  # the registry database block of these tests
HEARTBEAT_BASE_S = 1_763_600_000  # 2025-11-20 00:53:20 UTC


def heartbeat(seconds: int, unit: str) -> int:
    """An epoch timestamp in ``unit`` (s, ms, us, ns)."""
    return seconds * {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]


def records(obj: int, n: int, unit: str = "ms", **extra) -> list[dict]:
    """``n`` telemetry records of object ``obj``; ``seq`` makes each one identifiable."""
    return [
        {"heartbeat": heartbeat(HEARTBEAT_BASE_S + obj * 3600 + i, unit), "obj": obj, "seq": i,
         "device": f"plc{obj % 3}", "temperature": 20.0 + i / 10, **extra}
        for i in range(n)
    ]


def ndjson(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def lake_rows(lake: StorageLocation, target_prefix: str = "datalog_v2") -> list[tuple]:
    """Every published row as (source_file, seq, hiveperiod, dstrct_code, datetime_wita)."""
    files = [lake.url(o.key) for o in lake.list_objects(target_prefix)
             if o.key.endswith(".parquet")]
    if not files:
        return []
    con = connect("1GB", tempfile.gettempdir(), [lake])
    return con.execute(
        "SELECT source_file, seq, CAST(hiveperiod AS VARCHAR), dstrct_code, datetime_wita "
        "FROM read_parquet($f, hive_partitioning=true, union_by_name=true) ORDER BY 1, 2",
        {"f": files}).fetchall()


def statuses(engine: Engine, tables: Tables) -> dict[str, str]:
    t = tables.s3_object
    with engine.connect() as conn:
        return dict(conn.execute(select(t.c.key, t.c.compression_status)).all())


def run_token() -> str:
    return str(uuid.uuid4())



def save_s3_blocks(endpoint: str, bucket: str, prefix: str
                   ) -> tuple[StorageLocation, StorageLocation]:
    """``<prefix>-raw-s3`` and ``<prefix>-lake-s3`` blocks on two folders of ``bucket``
    on moto's server; returns the same two as storage locations."""
    from prefect_aws import AwsCredentials, S3Bucket
    from prefect_aws.client_parameters import AwsClientParameters

    from shopfloor.storage import S3Credentials

    creds = AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing",
                           region_name="us-east-1",
                           aws_client_parameters=AwsClientParameters(endpoint_url=endpoint))
    for folder in ("raw", "lake"):
        S3Bucket(bucket_name=bucket, bucket_folder=folder, credentials=creds).save(
            f"{prefix}-{folder}-s3", overwrite=True)
    c = S3Credentials("testing", "testing", None, "us-east-1", endpoint)
    return StorageLocation("s3", bucket, "raw", c), StorageLocation("s3", bucket, "lake", c)


REPO = Path(__file__).resolve().parents[3]


def start_paused_child(code: str, env: dict[str, str], marker: Path) -> subprocess.Popen:
    """Run ``code`` in a child process until its pause hook writes ``marker``."""
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not marker.exists():
        if child.poll() is not None:
            pytest.fail(f"child ended before pausing: {child.stderr.read()[-2000:]}")
        try:
            child.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            pass
    return child
