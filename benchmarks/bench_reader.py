"""Lake reader benchmark: what the lake protocol's exactly-once read costs over a bare
read. (a) ``shopfloor.lake.protocol.read_lake`` (partition states, the compaction and
extraction manifests in flight listed before and checked after, the visible files read
by DuckDB) against (b) DuckDB ``read_parquet`` over the same files listed once, in one
process, on a local folder and on moto's S3 server. Figures: median seconds of each and
(a)/(b).

Not a test. Run from the repository root, e.g.::

    .venv/bin/python benchmarks/bench_reader.py --days 30 --files 3 --rows 2000
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import boto3
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from shopfloor.lake import protocol
from shopfloor.storage import S3Credentials, StorageLocation
from shopfloor.storage_engines import attach_duckdb

DATASET = "datalog_v2"


def fill(lake: StorageLocation, days: int, files: int, rows: int) -> int:
    fs, n = lake.arrow_filesystem(), 0
    for d in range(days):
        for f in range(files):
            key = (f"{DATASET}/hiveperiod=2026-01-{d % 28 + 1:02d}/dstrct_code=D{d // 28:02d}/"
                   f"part-run{f}.D01-{f}.parquet")
            lake.make_parent(key)
            table = pa.table({"id": pa.array(range(n, n + rows), pa.int64()),
                              "v": pa.array([float(i) for i in range(rows)])})
            pq.write_table(table, lake.path(key), filesystem=fs)
            n += rows
    # One compaction claim in flight and one finished extraction-less dataset: the
    # reader lists their manifests as it always does.
    lake.write_bytes(f"_compaction/{DATASET}/manifests/inflight.D01.json", b'{"files": []}')
    return n


def bare(lake: StorageLocation, con: duckdb.DuckDBPyConnection) -> int:
    files = [lake.url(o.key) for o in lake.list_objects(DATASET) if o.key.endswith(".parquet")]
    return con.execute("SELECT count(*) FROM read_parquet($f, union_by_name=true, "
                       "hive_partitioning=true)", {"f": files}).fetchone()[0]


def protocol_read(lake: StorageLocation, con: duckdb.DuckDBPyConnection) -> int:
    return len(protocol.read_lake(lake, DATASET, "id", con))


def measure(lake: StorageLocation, rounds: int) -> tuple[float, float]:
    con = duckdb.connect()
    attach_duckdb(con, [lake])
    a, b = [], []
    for _ in range(rounds):  # interleaved, so drift hits both alike
        t = time.perf_counter()
        n_a = protocol_read(lake, con)
        a.append(time.perf_counter() - t)
        t = time.perf_counter()
        n_b = bare(lake, con)
        b.append(time.perf_counter() - t)
        assert n_a == n_b, (n_a, n_b)
    con.close()
    return statistics.median(a), statistics.median(b)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--files", type=int, default=3)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        local = StorageLocation("local", str(Path(tmp) / "lake"))
        rows = fill(local, args.days, args.files, args.rows)
        a, b = measure(local, args.rounds)
        print(f"local: {rows} rows, {args.days * args.files} files: protocol {a:.3f} s, "
              f"bare {b:.3f} s, ratio {a / b:.2f}")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                     aws_access_key_id="testing", aws_secret_access_key="testing",
                     ).create_bucket(Bucket="bench")
        s3 = StorageLocation("s3", "bench", "lake",
                             S3Credentials("testing", "testing", None, "us-east-1", endpoint))
        rows = fill(s3, args.days, args.files, args.rows)
        a, b = measure(s3, args.rounds)
        print(f"moto S3: {rows} rows, {args.days * args.files} files: protocol {a:.3f} s, "
              f"bare {b:.3f} s, ratio {a / b:.2f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
