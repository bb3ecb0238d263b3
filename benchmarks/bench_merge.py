"""Lake maintenance benchmark: (a) the merge (``shopfloor.lake.merge.maintain``: claims,
schema unification, staging, row check, manifest, commit, deletes) against (b) one bare
DuckDB ``COPY`` per partition over ``read_parquet(..., union_by_name=true)`` of the same
small files, in a local folder. Figures are rows/s and input MB/s, and (a)/(b).

Not a test. Run from the repository root, e.g.::

    .venv/bin/python benchmarks/bench_merge.py --files 2000 --partitions 4 --rows 500

The files drift in schema like compaction batches (a column appears, an integer column
becomes floating point), so (b) can read them too. Each repetition writes them afresh.
"""

import argparse
import shutil
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from shopfloor.db.engine import init_db, make_engine
from shopfloor.lake.merge import MergeSpec, maintain
from shopfloor.storage import StorageLocation

PREFIX = "datalog_v2"


def write(root: Path, files: int, partitions: int, rows: int) -> list[Path]:
    folders = [root / PREFIX / f"hiveperiod=2026-01-{p + 1:02d}" / "dstrct_code=BRCB"
               for p in range(partitions)]
    for f in folders:
        f.mkdir(parents=True, exist_ok=True)
    for n in range(files):
        ids = range(n * rows, (n + 1) * rows)
        drift = n * 2 // files
        cols = {"id": pa.array(list(ids), pa.int64()),
                "heartbeat": pa.array([1.7e9 + i for i in ids]) if drift else
                pa.array([1_700_000_000 + i for i in ids], pa.int64()),
                "temperature": pa.array([20.0 + i % 17 for i in ids]),
                "device": pa.array([f"line{i % 9}-plc" for i in ids])}
        if drift:
            cols["extra"] = pa.array([f"x{i % 100}" for i in ids])
        pq.write_table(pa.table(cols), folders[n % partitions] / f"part-r{n}.BRCB-0.parquet",
                       compression="zstd")
    return folders


def bare(folders: list[Path]) -> None:
    import duckdb

    con = duckdb.connect()
    for f in folders:
        files = [str(p) for p in sorted(f.glob("*.parquet"))]
        con.execute("COPY (SELECT * FROM read_parquet($f, union_by_name=true, "
                    f"hive_partitioning=false)) TO '{f}/bare.parquet' "
                    "(FORMAT parquet, COMPRESSION zstd)", {"f": files})
        for p in files:
            Path(p).unlink()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--rows", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    total_rows = args.files * args.rows
    best: dict[str, float] = {}
    mb = 0.0
    for _ in range(args.repeat):
        for name in ("merge", "bare"):
            root = Path(tempfile.mkdtemp(prefix="bench-merge-"))
            try:
                folders = write(root / "lake", args.files, args.partitions, args.rows)
                mb = sum(p.stat().st_size for f in folders for p in f.glob("*")) / 2**20
                t0 = time.perf_counter()
                if name == "bare":
                    bare(folders)
                else:
                    engine = make_engine(f"sqlite+pysqlite:///{root / 'meta.db'}")
                    spec = MergeSpec(StorageLocation("local", str(root / "lake")), PREFIX,
                                     engine, init_db(engine))
                    t0 = time.perf_counter()
                    res = maintain(spec, date(2026, 2, 1), 3, lambda: uuid.uuid4().hex)
                    assert all(r.status == "merged" for r in res), res
                    assert sum(r.rows for r in res) == total_rows
                    engine.dispose()
                took = time.perf_counter() - t0
                best[name] = min(best.get(name, took), took)
            finally:
                shutil.rmtree(root, ignore_errors=True)
    print(f"{args.files} files, {args.partitions} partitions, {total_rows:,} rows, "
          f"{mb:.1f} MB in; best of {args.repeat}")
    for name in ("merge", "bare"):
        s = best[name]
        print(f"{name:6s} {s:7.2f} s  {total_rows / s:12,.0f} rows/s  {mb / s:7.1f} MB/s")
    print(f"merge / bare COPY: {best['bare'] / best['merge']:.2f}x the bare throughput")


if __name__ == "__main__":
    main()
