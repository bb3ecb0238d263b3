"""Benchmark: hourly aggregation on PostgreSQL, three ways (not a test; run by hand).

With ``--two-databases`` the raw rows live in one database (the IoT database of the
seed) and the hourly table in another (the HQ database): the same rows are generated
in both, (b) runs inside the target on its copy, and (a) is the ``hourly_backfill``
flow and the ``hourly_aggregation`` flow (one explicit window over the whole range)
reading the source and writing the target. (c) is skipped in that mode.

(a) the ``hourly-backfill`` flow over the whole range (chunks, GROUP BY pushed down,
    groups upserted, validated);
(b) the limit: one bare ``INSERT ... SELECT ... GROUP BY ... ON CONFLICT`` statement;
(c) the seed's way: fetch raw rows into pandas, aggregate, upsert row by row. It is far
    too slow for the whole range, so it runs on the first ``--pandas-days`` days and is
    compared by throughput (raw rows per second).

The flow runs in a child process (its own Prefect test server) so its peak RSS can be
read with ``resource.getrusage``; it is measured over a short and the whole range to
show that memory does not grow with the rows.

Usage::

    .venv/bin/python benchmarks/bench_aggregation.py --rows 10000000 --days 30 --locations 200
    .venv/bin/python benchmarks/bench_aggregation.py --two-databases --rows 10000000 --days 30

The databases (``shopfloor_bench_agg_<random>`` on ``$SHOPFLOOR_BENCH_PG_URL``, default the
local PostgreSQL) are dropped at the end.
"""

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from shopfloor.aggregation.windows import DEFAULT_CHUNK_HOURS
from shopfloor.db.engine import init_db, make_engine
from shopfloor.settings import aggregation_work_mem

START = datetime(2024, 1, 1, tzinfo=UTC)

# setseed makes random() repeat, so two databases get the same rows (checked by checksum).
GENERATE = """
SELECT setseed(0.42);
INSERT INTO temperature_raw (loc_id, capture_dt, temperature, humidity, pcv_temperature,
                             device, ingested_at)
SELECT 'L' || lpad((i % :locs)::text, 4, '0'),
       :start + ((i / :locs) * :step) * interval '1 second',
       15 + 20 * random(), 30 + 40 * random(), 20 + 5 * random(), 'bench', :start
FROM generate_series(0, :n - 1) AS i
"""

# The same hourly row the flows write: count, sum, min, max and avg of each measure and
# the sample count (an earlier version wrote max and avg only, less work than the flow).
_M = ("temperature", "humidity", "pcv_temperature")
_AGGS = ("count", "sum", "min", "max", "avg")
_SQL_AGG = {"count": "count({m})", "sum": "sum({m}::double precision)", "min": "min({m})",
            "max": "max({m})", "avg": "avg({m})"}
BARE = f"""
INSERT INTO temperature_hourly (loc_id, ymd, hh, {", ".join(f"{m}_{a}" for m in _M for a in _AGGS)},
    sample_count, updated_at)
SELECT loc_id, to_char(h, 'YYYYMMDD'), to_char(h, 'HH24'),
       {", ".join(_SQL_AGG[a].format(m=m) for m in _M for a in _AGGS)}, count(*), now()
FROM (SELECT loc_id, date_trunc('hour', capture_dt) AS h, temperature, humidity,
             pcv_temperature
      FROM temperature_raw WHERE capture_dt >= :s AND capture_dt < :e) b
GROUP BY loc_id, h
ON CONFLICT (loc_id, ymd, hh) DO UPDATE SET
    {", ".join(f"{m}_{a} = excluded.{m}_{a}" for m in _M for a in _AGGS)},
    sample_count = excluded.sample_count, updated_at = excluded.updated_at
"""

# Run by the child process: one flow ``repeat`` times, then its wall times and peak RSS.
CHILD = """
import contextlib, json, os, resource, sys, time
from datetime import date, datetime, timedelta
from pathlib import Path
from prefect.testing.utilities import prefect_test_harness
from sqlalchemy import text
from blocks.bootstrap import connector_from_url
from shopfloor.db.engine import make_engine
a = json.loads(sys.argv[1])
target = make_engine(a["target"])
runs = []
real = bool(os.environ.get("PREFECT_API_URL"))  # a prefect server started by the script
with (contextlib.nullcontext() if real else prefect_test_harness(server_startup_timeout=180)):
    if a["limits"]:  # the global concurrency limits `shopfloor deploy` creates
        from prefect.client.orchestration import get_client
        from deployments.operations import load_operations
        with get_client(sync_client=True) as client:
            for lim in load_operations(Path(a["root"])).get("concurrency_limits") or []:
                client.upsert_global_concurrency_limit_by_name(lim["name"], int(lim["limit"]))
    from flows.backfill import hourly_backfill
    from flows.hourly_aggregation import hourly_aggregation
    connector_from_url(a["source"]).save("bench-agg-src", overwrite=True)
    connector_from_url(a["target"]).save("bench-agg-db", overwrite=True)
    blocks = {"source_db": "bench-agg-src", "target_db": "bench-agg-db"}
    first, last = date.fromisoformat(a["first"]), date.fromisoformat(a["last"])
    hourly_backfill(date(2000, 1, 1), date(2000, 1, 1), **blocks)  # warm-up: imports, first run
    for _ in range(a["repeat"]):
        with target.begin() as conn:
            conn.execute(text("TRUNCATE temperature_hourly"))
        t0 = time.perf_counter()
        if a["flow"] == "backfill":
            s = hourly_backfill(first, last, chunk_hours=a["chunk"], max_concurrency=a["conc"],
                                **blocks)
        else:
            s = hourly_aggregation(start=datetime.combine(first, datetime.min.time()),
                                   end=datetime.combine(last + timedelta(days=1),
                                                        datetime.min.time()), **blocks)
            s = {k: v for k, v in s.items() if k != "rows"}
        runs.append(time.perf_counter() - t0)
print("RESULT " + json.dumps({"runs": runs, "seconds": min(runs), "summary": s,
      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def generate(engine, n: int, days: int, locs: int) -> None:
    step = days * 86400 * locs / n  # seconds between readings of one location
    with engine.begin() as conn:
        # Secondary indexes are built after the load: several times faster.
        conn.execute(text("DROP INDEX IF EXISTS ix_temperature_raw_capture_dt"))
        conn.execute(text("DROP INDEX IF EXISTS ix_temperature_raw_ingested_at"))
        conn.execute(text(GENERATE), {"locs": locs, "start": START, "step": step, "n": n})
        conn.execute(text("CREATE INDEX ix_temperature_raw_capture_dt ON "
                          "temperature_raw (capture_dt)"))
        conn.execute(text("CREATE INDEX ix_temperature_raw_ingested_at ON "
                          "temperature_raw (ingested_at)"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE temperature_raw"))


def truncate_hourly(engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE temperature_hourly"))


def checksum(engine) -> tuple:
    with engine.connect() as conn:
        return tuple(conn.execute(text(
            "SELECT count(*), sum((temperature * 1e6)::bigint), sum((humidity * 1e6)::bigint), "
            "min(capture_dt), max(capture_dt) FROM temperature_raw")).one())


def run_bare(engine, days: int, work_mem: str | None = None) -> float:
    truncate_hourly(engine)
    s, e = START.replace(tzinfo=None), (START + timedelta(days=days)).replace(tzinfo=None)

    def statement() -> None:  # with its commit, as the flows' times include theirs
        with engine.begin() as conn:
            if work_mem:  # the flows' setting (SHOPFLOOR_AGG_WORK_MEM), for comparison
                conn.execute(text("SELECT set_config('work_mem', :v, true)"), {"v": work_mem})
            conn.execute(text(BARE), {"s": s, "e": e})

    seconds, _ = timed(statement)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS bench_hourly_bare"))
        conn.execute(text("CREATE TABLE bench_hourly_bare AS SELECT * FROM temperature_hourly"))
    return seconds


# Settings of the flows' child process: a `prefect server` (PREFECT_API_URL) or, when
# empty, Prefect's test harness; and whether the operations.yaml limits are created.
CHILD_ENV: dict[str, str] = {}
LIMITS = {"on": True}


def run_flow(source: str, target: str, days: int, chunk: int, conc: int, repeat: int,
             flow: str = "backfill") -> dict:
    """Run ``flow`` ``repeat`` times in a child process; the best time and the peak RSS."""
    last = (START + timedelta(days=days - 1)).date().isoformat()
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOGGING_LEVEL="WARNING", **CHILD_ENV)
    args = {"source": source, "target": target, "first": START.date().isoformat(),
            "last": last, "chunk": chunk, "conc": conc, "repeat": repeat, "flow": flow,
            "limits": LIMITS["on"], "root": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)],
                          capture_output=True, text=True, env=env, check=False)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"flow run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def compare_with_bare(engine) -> str:
    with engine.connect() as conn:
        row = conn.execute(text("""
            SELECT count(*) AS n,
                   count(*) FILTER (WHERE a.loc_id IS NULL OR b.loc_id IS NULL) AS missing,
                   max(abs(a.temperature_avg - b.temperature_avg)) AS avg_diff,
                   count(*) FILTER (WHERE a.sample_count <> b.sample_count
                                     OR a.temperature_max <> b.temperature_max) AS differ
            FROM temperature_hourly a FULL JOIN bench_hourly_bare b USING (loc_id, ymd, hh)
        """)).one()
    return (f"{row.n} rows compared, {row.missing} missing on either side, {row.differ} with a "
            f"different count or max, largest avg difference {row.avg_diff}")


def run_pandas(url: str, days: int) -> tuple[float, int]:
    """The seed's way: raw rows into pandas, groupby, then one upsert per row."""
    import pandas as pd

    engine = make_engine(url)
    truncate_hourly(engine)
    s, e = START.replace(tzinfo=None), (START + timedelta(days=days)).replace(tzinfo=None)
    upsert_one = text(BARE.split("SELECT", 1)[0] + """VALUES (:loc_id, :ymd, :hh, :tmax, :tavg,
        :hmax, :havg, :pmax, :pavg, :n, now())""" + BARE.split("GROUP BY loc_id, h", 1)[1])
    t0 = time.perf_counter()
    with engine.connect() as conn:
        df = pd.read_sql(text("SELECT * FROM temperature_raw WHERE capture_dt >= :s AND "
                              "capture_dt < :e"), conn, params={"s": s, "e": e})
    df["ymd"] = df["capture_dt"].dt.strftime("%Y%m%d")
    df["hh"] = df["capture_dt"].dt.strftime("%H")
    agg = df.groupby(["loc_id", "ymd", "hh"]).agg(
        tmax=("temperature", "max"), tavg=("temperature", "mean"), hmax=("humidity", "max"),
        havg=("humidity", "mean"), pmax=("pcv_temperature", "max"),
        pavg=("pcv_temperature", "mean"), n=("temperature", "size")).reset_index()
    with engine.begin() as conn:
        for rec in agg.to_dict("records"):
            conn.execute(upsert_one, {k: (int(v) if k == "n" else v) for k, v in rec.items()})
    return time.perf_counter() - t0, len(df)


def _runs(seconds: list[float]) -> str:
    return ", ".join(f"{x:.1f} s" for x in seconds)


def single_database(url: str, a: argparse.Namespace) -> None:
    """Source and target in one database: (a) takes the in-database path; (c) too."""
    engine = make_engine(url)
    init_db(engine)
    gen, _ = timed(lambda: generate(engine, a.rows, a.days, a.locations))
    print(f"generated {a.rows:,} raw rows, {a.days} days, {a.locations} locations "
          f"in {gen:.1f} s")
    per_day = a.rows / a.days
    bares = [run_bare(engine, a.days) for _ in range(a.repeat)]
    bare = min(bares)
    print(f"(b) bare INSERT..SELECT..GROUP BY..ON CONFLICT: best {bare:.1f} s "
          f"({a.rows / bare:,.0f} raw rows/s); runs {_runs(bares)}")
    short = run_flow(url, url, a.short_days, a.chunk_hours, a.max_concurrency, 1)
    full = run_flow(url, url, a.days, a.chunk_hours, a.max_concurrency, a.repeat)
    print(f"(a) hourly_backfill {a.days} days: best {full['seconds']:.1f} s "
          f"({a.rows / full['seconds']:,.0f} raw rows/s), {full['summary']['groups']:,} "
          f"groups, peak RSS {full['peak_rss_mb']:.0f} MB; runs {_runs(full['runs'])}")
    print(f"    same flow over {a.short_days} days ({per_day * a.short_days:,.0f} rows): "
          f"{short['seconds']:.1f} s, peak RSS {short['peak_rss_mb']:.0f} MB")
    print(f"    (a) vs (b): {compare_with_bare(engine)}")
    pandas = [run_pandas(url, a.pandas_days) for _ in range(a.repeat)]
    pandas_s, pandas_rows = min(pandas)
    print(f"(c) pandas + row-by-row upsert, {a.pandas_days} day(s) = {pandas_rows:,} rows: "
          f"best {pandas_s:.1f} s ({pandas_rows / pandas_s:,.0f} raw rows/s); "
          f"runs {_runs([x[0] for x in pandas])}")
    print(f"ratio (a)/(b) time: {full['seconds'] / bare:.2f}x; (a) throughput / (c) "
          f"throughput: {(a.rows / full['seconds']) / (pandas_rows / pandas_s):.1f}x")
    engine.dispose()


def two_databases(source_url: str, target_url: str, a: argparse.Namespace) -> None:
    """Raw rows in the source, hourly rows in the target (the seed's IoT and HQ databases);
    (b) runs in the target on a copy of the same rows."""
    source, target = make_engine(source_url), make_engine(target_url)
    for engine in (source, target):
        init_db(engine)
        gen, _ = timed(lambda e=engine: generate(e, a.rows, a.days, a.locations))
        print(f"generated {a.rows:,} raw rows, {a.days} days, {a.locations} locations in "
              f"{engine.url.database} in {gen:.1f} s")
    if checksum(source) != checksum(target):
        raise SystemExit("the two databases did not get the same raw rows")
    per_day = a.rows / a.days
    bares = [run_bare(target, a.days) for _ in range(a.repeat)]
    bare = min(bares)
    print(f"(b) bare INSERT..SELECT..GROUP BY..ON CONFLICT inside the target: best {bare:.1f} s "
          f"({a.rows / bare:,.0f} raw rows/s); runs {_runs(bares)}")
    results = {}
    for flow in ("backfill", "hourly"):
        short = run_flow(source_url, target_url, a.short_days, a.chunk_hours,
                         a.max_concurrency, 1, flow)
        full = run_flow(source_url, target_url, a.days, a.chunk_hours, a.max_concurrency,
                        a.repeat, flow)
        results[flow] = full
        name = ("hourly_backfill" if flow == "backfill"
                else "hourly_aggregation (one explicit window)")
        print(f"(a) {name}, source -> target, {a.days} days ({full['summary'].get('path')}): "
              f"best {full['seconds']:.1f} s ({a.rows / full['seconds']:,.0f} raw rows/s), "
              f"{full['summary']['groups']:,} groups, peak RSS {full['peak_rss_mb']:.0f} MB; "
              f"runs {_runs(full['runs'])}")
        print(f"    same flow over {a.short_days} days ({per_day * a.short_days:,.0f} rows): "
              f"{short['seconds']:.1f} s, peak RSS {short['peak_rss_mb']:.0f} MB")
        print(f"    (a) vs (b): {compare_with_bare(target)}")
    # Again after the flows, so a load that came or went during the run (a shared
    # machine) touches both sides; the best of all bare runs is the baseline.
    after = [run_bare(target, a.days) for _ in range(a.repeat)]
    bare = min(bare, *after)
    print(f"(b) again after the flows: runs {_runs(after)}; baseline: best {bare:.1f} s")
    print("ratio (a)/(b) time: " + "; ".join(
        f"{flow} {r['seconds'] / bare:.2f}x" for flow, r in results.items()))
    # Not the baseline: the bare statement given the memory the flows' GROUP BY gets.
    tuned = [run_bare(target, a.days, aggregation_work_mem()) for _ in range(a.repeat)]
    print(f"(b') bare with work_mem={aggregation_work_mem()}: runs {_runs(tuned)}; ratio "
          + "; ".join(f"{flow} {r['seconds'] / min(tuned):.2f}x" for flow, r in results.items()))
    source.dispose()
    target.dispose()


@contextmanager
def prefect_server(db_url: str) -> Iterator[dict[str, str]]:
    """``prefect server start`` on a free port with its database on PostgreSQL (as a plant
    runs it: on SQLite, a concurrency-slot call waited about 2 s now and then, see the
    README); yields the environment the flows' child process needs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = tempfile.mkdtemp(prefix="bench-agg-prefect-")
    env = {"PREFECT_HOME": home, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host",
         "127.0.0.1", "--port", str(port)],
        env=dict(os.environ, **env, PREFECT_SERVER_ANALYTICS_ENABLED="false",
                 PREFECT_API_DATABASE_CONNECTION_URL=db_url),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(120):
            try:
                if httpx.get(env["PREFECT_API_URL"] + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        else:
            raise SystemExit("prefect server did not start in 120 s")
        yield env
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--locations", type=int, default=200)
    p.add_argument("--short-days", type=int, default=7, help="short flow run (memory check)")
    p.add_argument("--pandas-days", type=int, default=1)
    p.add_argument("--chunk-hours", type=int, default=DEFAULT_CHUNK_HOURS)
    p.add_argument("--max-concurrency", type=int, default=4)
    p.add_argument("--repeat", type=int, default=3,
                   help="runs of (a), (b) and (c) each; the best is compared (shared machine)")
    p.add_argument("--two-databases", action="store_true",
                   help="raw rows in one database, hourly rows in another")
    p.add_argument("--prefect", choices=("server", "harness"), default="server",
                   help="the flows' Prefect API: a `prefect server` on PostgreSQL (default) "
                        "or Prefect's test harness (SQLite)")
    p.add_argument("--no-limits", action="store_true",
                   help="do not create operations.yaml's global concurrency limits")
    a = p.parse_args()
    LIMITS["on"] = not a.no_limits
    server = os.environ.get("SHOPFLOOR_BENCH_PG_URL",
                            "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    tag = uuid.uuid4().hex[:8]
    names = ([f"shopfloor_bench_agg_{tag}_src", f"shopfloor_bench_agg_{tag}_tgt"]
             if a.two_databases else [f"shopfloor_bench_agg_{tag}"])
    if a.prefect == "server":
        names.append(f"shopfloor_bench_agg_{tag}_prefect")
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    urls = [make_url(server).set(database=n).render_as_string(hide_password=False)
            for n in names]
    try:
        with admin.connect() as conn:
            for name in names:  # names are ours: a fixed prefix and a hex tag
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        with contextlib.ExitStack() as stack:
            if a.prefect == "server":
                prefect_db = make_url(urls[-1]).set(drivername="postgresql+asyncpg")
                CHILD_ENV.update(stack.enter_context(prefect_server(
                    prefect_db.render_as_string(hide_password=False))))
            if a.two_databases:
                two_databases(urls[0], urls[1], a)
            else:
                single_database(urls[0], a)
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
