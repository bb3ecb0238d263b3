"""Benchmark: hourly aggregation on PostgreSQL, three ways (not a test; run by hand).

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

The database (``shopfloor_bench_agg_<random>`` on ``$SHOPFLOOR_BENCH_PG_URL``, default the
local PostgreSQL) is dropped at the end.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from shopfloor.db.engine import init_db, make_engine

START = datetime(2024, 1, 1, tzinfo=UTC)

GENERATE = """
INSERT INTO temperature_raw (loc_id, capture_dt, temperature, humidity, pcv_temperature,
                             device, ingested_at)
SELECT 'L' || lpad((i % :locs)::text, 4, '0'),
       :start + ((i / :locs) * :step) * interval '1 second',
       15 + 20 * random(), 30 + 40 * random(), 20 + 5 * random(), 'bench', :start
FROM generate_series(0, :n - 1) AS i
"""

BARE = """
INSERT INTO temperature_hourly (loc_id, ymd, hh, temperature_max, temperature_avg,
    humidity_max, humidity_avg, pcv_temperature_max, pcv_temperature_avg, sample_count,
    updated_at)
SELECT loc_id, to_char(h, 'YYYYMMDD'), to_char(h, 'HH24'), max(temperature), avg(temperature),
       max(humidity), avg(humidity), max(pcv_temperature), avg(pcv_temperature), count(*), now()
FROM (SELECT loc_id, date_trunc('hour', capture_dt) AS h, temperature, humidity,
             pcv_temperature
      FROM temperature_raw WHERE capture_dt >= :s AND capture_dt < :e) b
GROUP BY loc_id, h
ON CONFLICT (loc_id, ymd, hh) DO UPDATE SET temperature_max = excluded.temperature_max,
    temperature_avg = excluded.temperature_avg, humidity_max = excluded.humidity_max,
    humidity_avg = excluded.humidity_avg, pcv_temperature_max = excluded.pcv_temperature_max,
    pcv_temperature_avg = excluded.pcv_temperature_avg, sample_count = excluded.sample_count,
    updated_at = excluded.updated_at
"""

# Run by the child process: one backfill, then its wall time and peak RSS as JSON.
CHILD = """
import json, resource, sys, time
from datetime import date
from prefect.testing.utilities import prefect_test_harness
from sqlalchemy import text
from blocks.bootstrap import connector_from_url
from shopfloor.db.engine import make_engine
url, first, last = sys.argv[1:4]
chunk, conc, repeat = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
engine = make_engine(url)
runs = []
with prefect_test_harness(server_startup_timeout=180):
    from flows.backfill import hourly_backfill
    connector_from_url(url).save("bench-agg-db", overwrite=True)
    hourly_backfill(date(2000, 1, 1), date(2000, 1, 1), source_db="bench-agg-db",
                    target_db="bench-agg-db")  # warm-up: imports, first flow run
    for _ in range(repeat):
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE temperature_hourly"))
        t0 = time.perf_counter()
        s = hourly_backfill(date.fromisoformat(first), date.fromisoformat(last),
                            chunk_hours=chunk, max_concurrency=conc,
                            source_db="bench-agg-db", target_db="bench-agg-db")
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


def run_bare(engine, days: int) -> float:
    truncate_hourly(engine)
    s, e = START.replace(tzinfo=None), (START + timedelta(days=days)).replace(tzinfo=None)
    with engine.begin() as conn:
        seconds, _ = timed(lambda: conn.execute(text(BARE), {"s": s, "e": e}))
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS bench_hourly_bare"))
        conn.execute(text("CREATE TABLE bench_hourly_bare AS SELECT * FROM temperature_hourly"))
    return seconds


def run_flow(url: str, days: int, chunk: int, conc: int, repeat: int) -> dict:
    """Backfill ``repeat`` times in a child process; the best time and the peak RSS."""
    last = (START + timedelta(days=days - 1)).date().isoformat()
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOGGING_LEVEL="WARNING")
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, url, START.date().isoformat(), last, str(chunk), str(conc),
         str(repeat)],
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--locations", type=int, default=200)
    p.add_argument("--short-days", type=int, default=7, help="short flow run (memory check)")
    p.add_argument("--pandas-days", type=int, default=1)
    p.add_argument("--chunk-hours", type=int, default=24)
    p.add_argument("--max-concurrency", type=int, default=4)
    p.add_argument("--repeat", type=int, default=3,
                   help="runs of (a), (b) and (c) each; the best is compared (shared machine)")
    a = p.parse_args()
    server = os.environ.get("SHOPFLOOR_BENCH_PG_URL",
                            "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    name = f"shopfloor_bench_agg_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    try:
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
        short = run_flow(url, a.short_days, a.chunk_hours, a.max_concurrency, 1)
        full = run_flow(url, a.days, a.chunk_hours, a.max_concurrency, a.repeat)
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
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
