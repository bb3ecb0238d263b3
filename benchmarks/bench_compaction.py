"""S3 compaction benchmark: (a) the s3-compaction flow end to end against (b2) the same
typed DuckDB COPY bare, plus (b) a bare COPY with DuckDB's own schema detection and (c) a
pandas + pyarrow loop, over the same generated JSON telemetry in a local folder.

Not a test. Run from the repository root, e.g.::

    .venv/bin/python benchmarks/bench_compaction.py --objects 500 --records 20000 \
        --data-dir "$SHOPFLOOR_HOME/bench-compaction" --pandas-objects 25

The data (about 300 bytes a record, heartbeats in s/ms/us/ns by object) is generated once
with DuckDB and reused by later runs with the same size. (a) and (b2) run ``--rounds``
times, alternating which goes first; each round gives one (a)/(b2) ratio (wall time and
CPU time, with the load average). (a) is split into its steps (the ``compact`` task's
``*_s`` figures and Prefect's task-run times). A child process runs the flow with
``--memory-ram-limit`` and its peak RSS is reported.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
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
    """The schema the flow uses: DESCRIBE over ``SCHEMA_SAMPLE`` records per object,
    ``SCHEMA_CHUNK`` objects a time (the flow's own constants)."""
    from shopfloor.compaction.compact import SCHEMA_CHUNK, SCHEMA_SAMPLE
    from shopfloor.compaction.sql import describe_sql, merge_type

    columns: dict[str, str] = {}
    for i in range(0, len(files), SCHEMA_CHUNK):
        for name, typ, *_ in con.execute(describe_sql(SCHEMA_SAMPLE),
                                         {"files": files[i:i + SCHEMA_CHUNK]}).fetchall():
            columns[name] = merge_type(columns.get(name), typ)
    return columns


def bare_duckdb(raw: Path, out: Path, ram_limit: str, typed: bool = False
                ) -> tuple[int, dict[str, float]]:
    """(b) The limit: one COPY doing the same normalisation and partitioning.

    ``typed``: (b2), the same COPY reading with the flow's sampled schema as explicit
    columns instead of DuckDB's own ``union_by_name`` detection (sampling included).
    Returns the rows written and the seconds of ``schema`` (b2 only) and ``copy``.
    """
    shutil.rmtree(out, ignore_errors=True)
    con = duckdb.connect()
    con.execute("SET memory_limit = $m", {"m": ram_limit})
    con.execute("SET preserve_insertion_order = false")
    files = json_files(raw)
    params: dict = {"f": files}
    source = "read_json($f, union_by_name=true, filename=true)"
    seconds: dict[str, float] = {}
    if typed:
        t = time.perf_counter()
        params["c"] = sampled_columns(con, files)
        seconds["schema"] = time.perf_counter() - t
        source = "read_json($f, columns=$c, filename=true)"
    hb = "CAST(heartbeat AS DOUBLE)"
    us = (f"CAST(CASE WHEN {hb} < 1e11 THEN {hb} * 1e6 WHEN {hb} < 1e14 THEN {hb} * 1e3 "
          f"WHEN {hb} < 1e17 THEN {hb} ELSE {hb} / 1e3 END AS BIGINT)")
    ts = f"make_timestamp({us} + 28800000000)"
    t = time.perf_counter()
    row = con.execute(f"""COPY (SELECT * EXCLUDE (filename), {ts} AS datetime_wita,
        filename AS source_file, strftime({ts}, '%Y-%m-%d') AS hiveperiod
        FROM {source})
        TO '{out}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (hiveperiod, dstrct_code))
        """, params).fetchone()
    seconds["copy"] = time.perf_counter() - t
    con.close()
    return int(row[0]), seconds


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
    c1, t1 = cpu_seconds(), time.perf_counter()
    state = s3_compaction(distrik="BRCB", key_limit_per_run=100_000, ram_limit=ram_limit,
                          return_state=True, **blocks)
    t2, c2 = time.perf_counter(), cpu_seconds()
    return {"register_s": t1 - t0, "compaction_s": t2 - t1, "cpu_s": c2 - c1,
            "summary": state.result(),
            "tasks_s": task_seconds(state.state_details.flow_run_id),
            "out_bytes": dir_bytes(work / "lake")}


def task_seconds(flow_run_id: object) -> dict[str, float]:
    """Seconds each task of the flow run spent Running, by task name (Prefect's record)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    seconds: dict[str, float] = {}
    for tr in runs:
        if tr.start_time and tr.end_time:
            name = tr.name.rsplit("-", 1)[0]
            seconds[name] = seconds.get(name, 0.0) + (tr.end_time - tr.start_time
                                                      ).total_seconds()
    return seconds


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its live children (the ephemeral
    Prefect API server), from /proc."""
    own = os.times()
    total = own.user + own.system
    tick = os.sysconf("SC_CLK_TCK")
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:  # ppid; utime and stime follow at 12 and 13
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


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


def report(label: str, rows: int, wall: float, cpu: float, before: str, detail: dict
           ) -> dict:
    print(f"{label}: {rows:,} rows in {wall:.1f} s (cpu {cpu:.1f} s; {before} -> {load()})",
          flush=True)
    return {"rows": rows, "wall": wall, "cpu": cpu, "detail": detail}


def measure(label: str, fn: Callable[[], tuple[int, dict]]) -> dict:
    """Run ``fn`` (returns rows and details); its wall and CPU seconds and the load."""
    before, c0, t0 = load(), cpu_seconds(), time.perf_counter()
    rows, detail = fn()
    return report(label, rows, time.perf_counter() - t0, cpu_seconds() - c0, before, detail)


def measure_flow(label: str, args: argparse.Namespace, raw: Path, tag: str) -> dict:
    """(a), timed around the s3_compaction call alone (registration is apart)."""
    before = load()
    r = run_flow(args.data_dir, raw, args.ram_limit, tag)
    s, tasks = r["summary"], r["tasks_s"]
    out = report(label, s["rows_out"], r["compaction_s"], r["cpu_s"], before,
                 {"tasks": tasks})
    steps = {k: v for k, v in s.items() if k.endswith("_s") and k != "duration_s"}
    print(f"    compact steps: {', '.join(f'{k} {v:.2f}' for k, v in steps.items())}; "
          f"tasks: {', '.join(f'{k} {v:.2f}' for k, v in sorted(tasks.items()))}; "
          f"outside tasks {r['compaction_s'] - sum(tasks.values()):.2f} s; "
          f"register {r['register_s']:.1f} s; parquet {r['out_bytes'] / 1e9:.2f} GB, "
          f"{s['parquet_files']} files", flush=True)
    return out


def rounds(args: argparse.Namespace, raw: Path) -> dict[str, list[dict]]:
    """(a) and (b2) ``args.rounds`` times, alternating which goes first."""
    def b2() -> tuple[int, dict]:
        n, sec = bare_duckdb(raw, args.data_dir / "bare-out", args.ram_limit, typed=True)
        print(f"    schema {sec['schema']:.2f} s, copy {sec['copy']:.2f} s", flush=True)
        return n, sec

    results: dict[str, list[dict]] = {"a": [], "b2": []}
    for i in range(args.rounds):
        for k in (["b2", "a"] if i % 2 == 0 else ["a", "b2"]):
            if k == "a":
                results["a"].append(measure_flow(f"(a) s3-compaction flow, round {i + 1}",
                                                 args, raw, f"flow{i}"))
            else:
                results["b2"].append(measure(f"(b2) bare typed COPY, round {i + 1}", b2))
    return results


def ratio_line(name: str, a: list[dict], b: list[dict]) -> str:
    walls = [x["rows"] / x["wall"] / (y["rows"] / y["wall"]) for x, y in zip(a, b, strict=True)]
    cpus = [x["rows"] / x["cpu"] / (y["rows"] / y["cpu"]) for x, y in zip(a, b, strict=True)]
    return (f"{name} = {statistics.median(walls):.2f} wall (rounds: "
            f"{', '.join(f'{w:.2f}' for w in walls)}), {statistics.median(cpus):.2f} CPU")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--objects", type=int, default=500)
    p.add_argument("--records", type=int, default=20_000)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--ram-limit", default="4GB", help="RAM limit of (a) and (b)")
    p.add_argument("--memory-ram-limit", default="1GB", help="RAM limit of the memory check")
    p.add_argument("--pandas-objects", type=int, default=25,
                   help="objects (c) reads; its throughput is per row, so a subset is enough")
    p.add_argument("--rounds", type=int, default=2, help="rounds of (a) and (b2)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--skip", default="", help="comma list of b,c,mem to skip")
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
          f"(ready in {time.perf_counter() - t:.0f} s); {load()}", flush=True)
    results = rounds(args, raw)
    if "b" not in skip:
        results["b"] = [measure("(b) bare COPY, union_by_name", lambda: bare_duckdb(
            raw, args.data_dir / "bare-out", args.ram_limit))]
    if "c" not in skip:
        files = json_files(raw)[: args.pandas_objects]
        results["c"] = [measure(f"(c) pandas + pyarrow loop ({len(files)} objects)",
                                lambda: (pandas_loop(files, args.data_dir / "pandas-out"),
                                         {}))]
    for k, runs in results.items():
        rates = [x["rows"] / x["wall"] for x in runs]
        print(f"throughput ({k}): {', '.join(f'{v:,.0f}' for v in rates)} rows/s")
    print(ratio_line("(a)/(b2)", results["a"], results["b2"]) + " (goal >= 0.85)")
    if "b" in results:
        print(ratio_line("(a)/(b)", results["a"][:1], results["b"]))
    if "c" in results:
        print(ratio_line("(a)/(c)", results["a"][:1], results["c"]))
    if "mem" not in skip:
        peak, r = child_peak_rss(args, raw)
        print(f"memory: flow with ram_limit={args.memory_ram_limit} on {in_bytes / 1e9:.2f} GB: "
              f"peak RSS {peak:.2f} GB (goal < 1.25), {r['rows']:,} rows in "
              f"{r['compaction_s']:.1f} s; {load()}")


if __name__ == "__main__":
    main()
