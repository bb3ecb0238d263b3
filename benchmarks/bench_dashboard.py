"""Benchmark: the plant dashboard on a year of hourly data for 200 locations (not a test).

Fills a fresh PostgreSQL database with generate_series (fast bulk inserts):
``temperature_hourly`` one year x 24 h x ``--locations`` (1,752,000 rows for 200),
``temperature_raw`` the last ``--raw-hours`` hours at one reading per 5 s per location,
locations with thresholds, anomalies, quality rows, quarantine rows and an ``s3_object``
registry. Then:

1. each panel's query (``shopfloor.dashboard.queries``), median of ``--repeat`` runs,
   with two of them against a baseline in the same run: the 5-minute buckets and the
   daily rollup computed in pandas from the rows fetched instead of by one GROUP BY;
2. the page load in headless Chromium (Debian's, driven by Playwright): from
   ``page.goto`` until the last panel's metrics are rendered, served by
   ``shopfloor dashboard`` in ephemeral Prefect mode, on this database and, as the
   baseline, on an empty one. The first view after start (blocks loaded, imports) is
   reported apart from warm views (a new browser page each time).

Usage::

    .venv/bin/python benchmarks/bench_dashboard.py --locations 200 --days 365 --raw-hours 6

The database (``shopfloor_bench_dash_<random>`` on ``$SHOPFLOOR_BENCH_PG_URL``, default
the local PostgreSQL) and the temporary Prefect home are removed at the end.
"""

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import make_url

from shopfloor.dashboard import queries as q
from shopfloor.db.engine import init_db, make_engine
from shopfloor.db.schema import Tables

ROOT = Path(__file__).resolve().parents[1]
LOCS = "'L' || lpad(l::text, 4, '0')"
FILL = {
    "location": f"""
        INSERT INTO location (loc_id, name, site, temperature_min, temperature_max,
            humidity_min, humidity_max, pcv_temperature_min, pcv_temperature_max, active)
        SELECT {LOCS}, 'line ' || l, 'P1', 15, 30, 20, 80, 10, 60, true
        FROM generate_series(1, :locs) AS l""",
    "temperature_hourly": f"""
        INSERT INTO temperature_hourly (loc_id, ymd, hh, temperature_max, temperature_avg,
            humidity_max, humidity_avg, pcv_temperature_max, pcv_temperature_avg,
            sample_count, updated_at)
        SELECT {LOCS}, to_char(h, 'YYYYMMDD'), to_char(h, 'HH24'), 25 + 8 * random(),
               20 + 4 * random(), 60 + 10 * random(), 50, 30, 25, 720, now()
        FROM generate_series(1, :locs) AS l,
             generate_series(:first_hour, :last_hour, interval '1 hour') AS h""",
    "temperature_raw": f"""
        INSERT INTO temperature_raw (loc_id, capture_dt, temperature, humidity,
            pcv_temperature, device, ingested_at)
        SELECT {LOCS}, t, 20 + 5 * random(), 50 + 5 * random(), 25, 'plc-' || l, t
        FROM generate_series(1, :locs) AS l,
             generate_series(:raw_start, :now, interval '5 seconds') AS t""",
    "anomaly": f"""
        INSERT INTO anomaly (kind, loc_id, measure, hour_start, hours, score, detail,
            run_id, detected_at)
        SELECT (ARRAY['deviation','spike','flatline','gap'])[1 + k % 4], {LOCS},
               'temperature', :first_hour + (k * 97 % 8760) * interval '1 hour', 1, 5, '{{}}',
               'bench', now()
        FROM generate_series(1, :locs) AS l, generate_series(1, 20) AS k""",
    "quality_score": f"""
        INSERT INTO quality_score (flow, subject, window_start, window_end, completeness,
            validity, uniqueness, timeliness, overall, rows_in, run_id, recorded_at)
        SELECT 'modbus-capture', {LOCS}, h, h + interval '1 hour', 1, 0.99, 1, 1, 0.9975,
               720, 'bench', h
        FROM generate_series(1, :locs) AS l,
             generate_series(:now - interval '30 days', :now, interval '1 hour') AS h""",
    "quarantine": """
        INSERT INTO quarantine (source, record, reasons, run_id, quarantined_at)
        SELECT 'modbus-capture', '{}',
               '[{"column": "temperature", "check": "not_nullable", "value": "nan"}]',
               'bench', :now - (i % 2160) * interval '1 hour'
        FROM generate_series(1, 50000) AS i""",
    "s3_object": """
        INSERT INTO s3_object (key, key_hash, distrik, discovered_at, compression_status,
            attempts)
        SELECT 'raw/' || i || '.json', md5(i::text) || md5((i + 1)::text),
               'D' || lpad((i % 12)::text, 2, '0'),
               :now, CASE WHEN i % 50 = 0 THEN 'PENDING' WHEN i % 97 = 0 THEN 'FAILED'
                          ELSE 'SUCCESS' END, 0
        FROM generate_series(1, 200000) AS i""",
}


def create_database(server: str) -> tuple[str, Engine]:
    name = f"shopfloor_bench_dash_{uuid.uuid4().hex[:8]}"
    with create_engine(server, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    return url, make_engine(url)


def drop_database(server: str, url: str) -> None:
    name = make_url(url).database
    with create_engine(server, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def fill(engine: Engine, tables: Tables, locs: int, days: int, raw_hours: int,
         now: datetime) -> dict[str, int]:
    last_hour = now.replace(minute=0, second=0, microsecond=0)
    params = {"locs": locs, "now": now.replace(tzinfo=None),
              "first_hour": (last_hour - timedelta(hours=24 * days - 1)).replace(tzinfo=None),
              "last_hour": last_hour.replace(tzinfo=None),
              "raw_start": (now - timedelta(hours=raw_hours)).replace(tzinfo=None)}
    with engine.begin() as conn:
        for table in (tables.anomaly, tables.quality_score):
            table.create(conn, checkfirst=True)
    counts = {}
    for name, sql in FILL.items():
        started = time.perf_counter()
        with engine.begin() as conn:
            counts[name] = conn.execute(text(sql), params).rowcount
        print(f"filled {name}: {counts[name]:,} rows in {time.perf_counter() - started:.1f} s",
              flush=True)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    return counts


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def panel_queries(engine: Engine, tables: Tables, now: datetime) -> dict[str, Callable]:
    """Each panel's query as the page runs it by default (3 locations, 30 days, 6 h)."""
    locs, since = ["L0001", "L0002", "L0003"], now - timedelta(days=7)
    today = now.strftime("%Y%m%d")
    month = (now - timedelta(days=29)).strftime("%Y%m%d")
    year = (now - timedelta(days=365)).strftime("%Y%m%d")

    def run(fn: Callable, *args) -> Callable[[], object]:
        def call() -> object:
            with engine.connect() as conn:
                return fn(conn, tables, *args)
        return call

    return {
        "devices (last reading per device, 1 h scan + key lookups)":
            run(q.last_readings, now, timedelta(hours=1)),
        "locations and thresholds": run(q.locations),
        "daily, 3 locations x 30 days": run(q.daily, locs, month, today),
        "daily, 3 locations x 365 days": run(q.daily, locs, year, today),
        "daily, 200 locations x 30 days":
            run(q.daily, [f"L{i:04d}" for i in range(1, 201)], month, today),
        "hourly, 3 locations x 3 days":
            run(q.hourly, locs, (now - timedelta(days=2)).strftime("%Y%m%d"), today),
        "5-minute buckets, 3 locations x 6 h":
            run(q.five_minute_buckets, locs, now - timedelta(hours=6), now),
        "anomalies, 3 locations x 30 days":
            run(q.anomalies, locs, now - timedelta(days=30), now),
        "quality over time, 7 days": run(q.quality_over_time, since),
        "quarantine counts + newest 500 rows, 7 days":
            lambda: (run(q.quarantine_counts, since)(), run(q.quarantine_rows, since)()),
        "compaction backlog per district": run(q.compaction_backlog),
    }


def buckets_in_pandas(engine: Engine, tables: Tables, locs: list[str], start: datetime,
                      end: datetime) -> pd.DataFrame:
    """Baseline: fetch the raw rows and bucket them in pandas."""
    raw = tables.temperature_raw
    with engine.connect() as conn:
        df = pd.DataFrame(conn.execute(
            select(raw.c.loc_id, raw.c.capture_dt, *(raw.c[m] for m in q.MEASURES))
            .where(raw.c.loc_id.in_(locs), raw.c.capture_dt >= start,
                   raw.c.capture_dt < end)).all())
    df["bucket"] = pd.to_datetime(df["capture_dt"], utc=True).dt.floor("5min")
    return df.groupby(["loc_id", "bucket"])[list(q.MEASURES)].agg(["min", "mean", "max"])


def daily_in_pandas(engine: Engine, tables: Tables, locs: list[str], first: str,
                    last: str) -> pd.DataFrame:
    """Baseline: fetch the hourly rows and roll them up in pandas."""
    h = tables.temperature_hourly
    with engine.connect() as conn:
        df = pd.DataFrame(conn.execute(
            select(h).where(h.c.loc_id.in_(locs), h.c.ymd >= first, h.c.ymd <= last)).all())
    df["w"] = df["temperature_avg"] * df["sample_count"]
    g = df.groupby(["loc_id", "ymd"])
    return pd.DataFrame({"max": g["temperature_max"].max(),
                         "avg": g["w"].sum() / g["sample_count"].sum()})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def page_loads(url: str, views: int, prefect_home: Path) -> tuple[float, list[float]]:
    """Serve the page on ``url``'s database in ephemeral mode; (first view, warm views) s."""
    from playwright.sync_api import sync_playwright

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SHOPFLOOR_"))}
    env.update(PREFECT_HOME=str(prefect_home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
               PYTHONPATH=str(ROOT))
    block = f"bench-dash-{uuid.uuid4().hex[:6]}"
    subprocess.run([sys.executable, "-c", "import sys; from blocks.bootstrap import "
                    "connector_from_url as c; c(sys.argv[1]).save(sys.argv[2], overwrite=True)",
                    url, block], env=env, check=True, cwd=ROOT)
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("shopfloor")), "dashboard",
                             "--port", str(port), "--warehouse-db", block, "--metadata-db",
                             block], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/_stcore/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--no-sandbox", "--disable-dev-shm-usage"])
            times = [one_view(browser, f"http://127.0.0.1:{port}") for _ in range(views + 1)]
            browser.close()
        return times[0], times[1:]
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)


def one_view(browser, url: str) -> float:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    started = time.perf_counter()
    page.goto(url)
    page.get_by_text("Compaction backlog per district").wait_for(timeout=300_000)
    page.get_by_test_id("stMetricLabel").get_by_text("Devices online").wait_for()
    # Rendered means the script's run is over: Streamlit's status widget is gone.
    page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=300_000)
    elapsed = time.perf_counter() - started
    page.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--locations", type=int, default=200)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--raw-hours", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--views", type=int, default=5)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    server = os.environ.get("SHOPFLOOR_BENCH_PG_URL",
                            "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    now = datetime.now(UTC)
    url, engine = create_database(server)
    empty_url, empty_engine = create_database(server)
    try:
        tables = init_db(engine)
        init_db(empty_engine)
        counts = fill(engine, tables, args.locations, args.days, args.raw_hours, now)
        print(f"\nrows: {counts}\n\nquery (median of {args.repeat}) | ms")
        for name, fn in panel_queries(engine, tables, now).items():
            print(f"{name} | {median_ms(fn, args.repeat):.1f}", flush=True)
        locs = ["L0001", "L0002", "L0003"]
        pairs = {
            "5-minute buckets, 3 locations x 6 h": (
                lambda: panel_queries(engine, tables, now)[
                    "5-minute buckets, 3 locations x 6 h"](),
                lambda: buckets_in_pandas(engine, tables, locs, now - timedelta(hours=6),
                                          now)),
            "daily, 3 locations x 365 days": (
                lambda: panel_queries(engine, tables, now)["daily, 3 locations x 365 days"](),
                lambda: daily_in_pandas(engine, tables, locs,
                                        (now - timedelta(days=365)).strftime("%Y%m%d"),
                                        now.strftime("%Y%m%d"))),
        }
        print("\nvs baseline (fetch rows, compute in pandas) | GROUP BY ms | pandas ms | ratio")
        for name, (ours, base) in pairs.items():
            a, b = median_ms(ours, args.repeat), median_ms(base, args.repeat)
            print(f"{name} | {a:.1f} | {b:.1f} | {b / a:.1f}x", flush=True)
        if not args.no_browser:
            with tempfile.TemporaryDirectory() as home:
                full = page_loads(url, args.views, Path(home) / "full")
                empty = page_loads(empty_url, args.views, Path(home) / "empty")
            print("\npage load (s) | first view | warm median | warm max")
            for name, (first, warm) in (("year x locations", full), ("empty", empty)):
                print(f"{name} | {first:.2f} | {statistics.median(warm):.2f} | "
                      f"{max(warm):.2f}")
            print(f"ratio warm median full / empty: "
                  f"{statistics.median(full[1]) / statistics.median(empty[1]):.2f}")
    finally:
        engine.dispose()
        empty_engine.dispose()
        drop_database(server, url)
        drop_database(server, empty_url)


if __name__ == "__main__":
    main()
