"""S3 compaction benchmark: (a) the s3-compaction flow end to end, (b) one bare DuckDB COPY,
(c) a pandas + pyarrow loop, over the same generated JSON telemetry in a local folder.

Not a test. Run from the repository root, e.g.::

    .venv/bin/python benchmarks/bench_compaction.py --objects 500 --records 20000 \
        --data-dir "$SHOPFLOOR_HOME/bench-compaction" --pandas-objects 25

The data (about 300 bytes a record, heartbeats in s/ms/us/ns by object) is generated once
with DuckDB and reused by later runs with the same size. A child process runs the flow
with ``--memory-ram-limit`` and its peak RSS is reported.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb

UNITS = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
BASE_S = 1_763_600_000


def generate(data: Path, objects: int, records: int) -> Path:
    """``objects`` NDJSON files of ``records`` rows each, under ``data/raw`` (reused if there)."""
    raw = data / "raw"
    stamp = data / "raw.json"
    want = {"objects": objects, "records": records}
    if stamp.exists() and json.loads(stamp.read_text()) == want:
        return raw
    shutil.rmtree(raw, ignore_errors=True)
    raw.mkdir(parents=True)
    con = duckdb.connect()
    for o in range(objects):
        unit = list(UNITS)[o % 4]
        folder = raw / f"plc{o % 8}" / f"2025112{o % 10}00"
        folder.mkdir(parents=True, exist_ok=True)
        # Bench data: the numbers below are literals of this script, not user input.
        con.execute(f"""COPY (SELECT
            CAST(({BASE_S} + {o} * 600 + i * 3) AS BIGINT) * {UNITS[unit]} AS heartbeat,
            'BRCB' AS dstrct_code, 'plc{o % 8}' AS device, 'L' || lpad(CAST(i % 50 AS VARCHAR),
            3, '0') AS loc_id, round(20 + random() * 15, 2) AS temperature,
            round(40 + random() * 30, 2) AS humidity, round(25 + random() * 20, 2)
            AS pcv_temperature, round(random() * 5, 3) AS vibration_mm_s,
            round(1000 + random() * 20, 2) AS pressure_hpa, round(random() * 30, 2) AS current_a,
            round(380 + random() * 20, 1) AS voltage_v, i % 3 = 0 AS alarm,
            'running' AS status, {o} AS obj, i AS seq
            FROM range({records}) t(i)) TO '{folder / f"obj{o:04d}.json"}' (FORMAT json)""")
    stamp.write_text(json.dumps(want))
    return raw


def json_files(raw: Path) -> list[str]:
    return sorted(str(p) for p in raw.rglob("*.json"))


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def sampled_columns(con: duckdb.DuckDBPyConnection, files: list[str]) -> dict[str, str]:
    """The schema the flow uses: DESCRIBE over 2,048 records per object, 25 objects a time."""
    from shopfloor.compaction.sql import describe_sql, merge_type

    columns: dict[str, str] = {}
    for i in range(0, len(files), 25):
        for name, typ, *_ in con.execute(describe_sql(2048), {"files": files[i:i + 25]}
                                         ).fetchall():
            columns[name] = merge_type(columns.get(name), typ)
    return columns


def bare_duckdb(raw: Path, out: Path, ram_limit: str, typed: bool = False) -> int:
    """(b) The limit: one COPY doing the same normalisation and partitioning.

    ``typed``: (b2), the same COPY reading with the flow's sampled schema as explicit
    columns instead of DuckDB's own ``union_by_name`` detection.
    """
    shutil.rmtree(out, ignore_errors=True)
    con = duckdb.connect()
    con.execute("SET memory_limit = $m", {"m": ram_limit})
    con.execute("SET preserve_insertion_order = false")
    files = json_files(raw)
    params: dict = {"f": files}
    source = "read_json($f, union_by_name=true, filename=true)"
    if typed:
        params["c"] = sampled_columns(con, files)
        source = "read_json($f, columns=$c, filename=true)"
    hb = "CAST(heartbeat AS DOUBLE)"
    us = (f"CAST(CASE WHEN {hb} < 1e11 THEN {hb} * 1e6 WHEN {hb} < 1e14 THEN {hb} * 1e3 "
          f"WHEN {hb} < 1e17 THEN {hb} ELSE {hb} / 1e3 END AS BIGINT)")
    ts = f"make_timestamp({us} + 28800000000)"
    row = con.execute(f"""COPY (SELECT * EXCLUDE (filename), {ts} AS datetime_wita,
        filename AS source_file, strftime({ts}, '%Y-%m-%d') AS hiveperiod
        FROM {source})
        TO '{out}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (hiveperiod, dstrct_code))
        """, params).fetchone()
    return int(row[0])


def pandas_loop(files: list[str], out: Path) -> int:
    """(c) The obvious Python loop: read each file with pandas, write with pyarrow."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    shutil.rmtree(out, ignore_errors=True)
    rows = 0
    for f in files:
        df = pd.read_json(f, lines=True)
        hb = df["heartbeat"].astype("float64").to_numpy()
        mult = np.select([hb < 1e11, hb < 1e14, hb < 1e17], [1e6, 1e3, 1.0], 1e-3)
        wita = pd.to_datetime((hb * mult).astype("int64"), unit="us") + pd.Timedelta(hours=8)
        df["datetime_wita"] = wita
        df["source_file"] = f
        df["hiveperiod"] = wita.strftime("%Y-%m-%d")
        pq.write_to_dataset(pa.Table.from_pandas(df, preserve_index=False), str(out),
                            partition_cols=["hiveperiod", "dstrct_code"])
        rows += len(df)
    return rows


def flow_setup(data: Path, raw: Path, tag: str) -> tuple[Path, dict[str, str]]:
    """Fresh registry (SQLite) and lake, and blocks pointing at them."""
    from prefect.filesystems import LocalFileSystem

    from blocks.bootstrap import connector_from_url
    from shopfloor.db.engine import init_db, make_engine

    work = data / tag
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    url = f"sqlite+pysqlite:///{work / 'registry.db'}"
    init_db(make_engine(url))
    connector_from_url(url).save(f"bench-meta-{tag}", overwrite=True)
    LocalFileSystem(basepath=str(raw)).save(f"bench-raw-{tag}", overwrite=True)
    LocalFileSystem(basepath=str(work / "lake")).save(f"bench-lake-{tag}", overwrite=True)
    return work, {"raw_logs": f"bench-raw-{tag}", "lake": f"bench-lake-{tag}",
                  "metadata_db": f"bench-meta-{tag}"}


def run_flow(data: Path, raw: Path, ram_limit: str, tag: str) -> dict:
    """(a) register_s3_keys, then s3_compaction over every key in one claim."""
    from flows.s3_compaction import register_s3_keys, s3_compaction

    work, blocks = flow_setup(data, raw, tag)
    t0 = time.perf_counter()
    register_s3_keys(raw_logs=blocks["raw_logs"], distrik="BRCB",
                     metadata_db=blocks["metadata_db"])
    t1 = time.perf_counter()
    summary = s3_compaction(distrik="BRCB", key_limit_per_run=100_000, ram_limit=ram_limit,
                            **blocks)
    t2 = time.perf_counter()
    return {"register_s": t1 - t0, "compaction_s": t2 - t1, "summary": summary,
            "out_bytes": dir_bytes(work / "lake")}


def peak_rss_kb() -> int:
    """This process's peak RSS since it started its program (``VmHWM``).

    Not ``getrusage``: its ``ru_maxrss`` also counts the parent's pages the process had
    between fork and exec, i.e. the size of whoever started it.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child_peak_rss(args: argparse.Namespace, raw: Path) -> tuple[float, dict]:
    """Run the flow in a child process with the memory test's RAM limit; its peak RSS in GB."""
    env = {**os.environ, "PREFECT_HOME": str(args.data_dir / "prefect-child"),
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
    cmd = [sys.executable, __file__, "--child", "--data-dir", str(args.data_dir),
           "--memory-ram-limit", args.memory_ram_limit]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return r["peak_kb"] / 1024**2, r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--objects", type=int, default=500)
    p.add_argument("--records", type=int, default=20_000)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--ram-limit", default="4GB", help="RAM limit of (a) and (b)")
    p.add_argument("--memory-ram-limit", default="1GB", help="RAM limit of the memory check")
    p.add_argument("--pandas-objects", type=int, default=25,
                   help="objects (c) reads; its throughput is per row, so a subset is enough")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--skip", default="", help="comma list of a,b,b2,c,mem to skip")
    args = p.parse_args()
    args.data_dir = args.data_dir.resolve()
    raw = args.data_dir / "raw"
    if args.child:
        r = run_flow(args.data_dir, raw, args.memory_ram_limit, "child")
        print(json.dumps({"compaction_s": r["compaction_s"], "rows": r["summary"]["rows_out"],
                          "peak_kb": peak_rss_kb()}))
        return
    os.environ.setdefault("PREFECT_HOME", str(args.data_dir / "prefect"))
    # On a busy machine the ephemeral API can take longer than its default 20 s to start.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    skip = set(args.skip.split(","))
    t = time.perf_counter()
    raw = generate(args.data_dir, args.objects, args.records)
    in_bytes = dir_bytes(raw)
    print(f"input: {args.objects} objects x {args.records} records = "
          f"{args.objects * args.records:,} rows, {in_bytes / 1e9:.2f} GB "
          f"(ready in {time.perf_counter() - t:.0f} s)", flush=True)
    results = {}
    if "b" not in skip:
        t = time.perf_counter()
        n = bare_duckdb(raw, args.data_dir / "bare-out", args.ram_limit)
        results["b"] = (n, time.perf_counter() - t)
        print(f"(b) bare DuckDB COPY: {n:,} rows in {results['b'][1]:.1f} s", flush=True)
    if "b2" not in skip:
        t = time.perf_counter()
        n = bare_duckdb(raw, args.data_dir / "bare-out", args.ram_limit, typed=True)
        results["b2"] = (n, time.perf_counter() - t)
        print(f"(b2) bare DuckDB COPY, sampled schema as columns: {n:,} rows in "
              f"{results['b2'][1]:.1f} s", flush=True)
    if "a" not in skip:
        r = run_flow(args.data_dir, raw, args.ram_limit, "flow")
        n = r["summary"]["rows_out"]
        results["a"] = (n, r["compaction_s"])
        print(f"(a) s3-compaction flow: {n:,} rows in {r['compaction_s']:.1f} s "
              f"(+ register {r['register_s']:.1f} s), parquet {r['out_bytes'] / 1e9:.2f} GB",
              flush=True)
    if "c" not in skip:
        files = json_files(raw)[: args.pandas_objects]
        t = time.perf_counter()
        n = pandas_loop(files, args.data_dir / "pandas-out")
        results["c"] = (n, time.perf_counter() - t)
        print(f"(c) pandas + pyarrow loop: {n:,} rows ({len(files)} objects) in "
              f"{results['c'][1]:.1f} s", flush=True)
    rate = {k: n / s for k, (n, s) in results.items()}
    for k, v in rate.items():
        print(f"throughput ({k}): {v:,.0f} rows/s")
    if "a" in rate and "b" in rate:
        print(f"(a)/(b) = {rate['a'] / rate['b']:.2f} (goal >= 0.85)")
    if "a" in rate and "b2" in rate:
        print(f"(a)/(b2) = {rate['a'] / rate['b2']:.2f} (the flow's own overhead)")
    if "a" in rate and "c" in rate:
        print(f"(a)/(c) = {rate['a'] / rate['c']:.1f} (goal >= 5)")
    if "mem" not in skip:
        peak, r = child_peak_rss(args, raw)
        print(f"memory: flow with ram_limit={args.memory_ram_limit} on {in_bytes / 1e9:.2f} GB: "
              f"peak RSS {peak:.2f} GB (goal < 1.25), {r['rows']:,} rows in "
              f"{r['compaction_s']:.1f} s")


if __name__ == "__main__":
    main()
