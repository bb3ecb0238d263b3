"""Benchmark: the dashboard's tag trend over 30 days of 1 s data, against bare queries
on the same PostgreSQL table (not a test).

Fills ``tag_samples`` of a fresh PostgreSQL database with ``generate_series``: tag 1 at
one point a second for ``--days`` days (2,592,000 rows for 30), and ``--other-tags``
more tags of the same location at one point every 10 s, written in time order as
capture writes them (all tags of a slot together, so one tag's rows are spread over the
heap between the others'). About one point in 997 of tag 1 is bad with a reason.

Then, median of ``--repeat`` runs each, one connection per run:

1. the page's queries for tag 1 (``shopfloor.dashboard.queries``): the trend (buckets
   of ``trend_width(range)``: 3 h for 30 days, 240 rows), its quality marks, and the
   quality per tag of the location, over 30 days and over 24 h (the page's default);
2. the baselines on the same rows: the bare ``GROUP BY`` written by hand (min, avg,
   max per bucket, nothing else: what the database cannot avoid; run in turn with the
   trend, so the machine's load hits both alike) and fetching every point of the range
   to draw it without pushdown (``SELECT ts, value, quality``);
3. the plan of the trend query (``EXPLAIN (ANALYZE, BUFFERS)``), to show which index
   it uses;
4. all of it again with a covering index ``(tag_id, ts) INCLUDE (value, quality)``
   (an index-only scan), unless ``--no-covering``.

Usage::

    .venv/bin/python benchmarks/bench_tag_trend.py --days 30 --other-tags 9

The database (``shopfloor_bench_dash_<random>`` on ``$SHOPFLOOR_BENCH_PG_URL``, default
the local PostgreSQL) is dropped at the end.
"""

import argparse
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bench_dashboard import create_database, drop_database, median_ms
from sqlalchemy import Engine, func, select, text

from shopfloor.dashboard import queries as q
from shopfloor.dashboard.buckets import time_bucket
from shopfloor.dashboard.views import trend_width
from shopfloor.db.engine import init_db
from shopfloor.db.schema import Tables

FILL_TAGS = """
    INSERT INTO tags (id, name, device, location, unit, data_type, source_name, updated_at)
    SELECT i, CASE WHEN i = 1 THEN 'line_pressure' ELSE 'tag_' || i END, 'plc-1', 'L0001',
           'bar', 'float32', 'holding:' || (100 + 2 * i), now()
    FROM generate_series(1, :tags) AS i"""
# One slot after the other, every tag of a slot together (tag 1 every second, the others
# every 10 s), as capture writes them.
FILL_SAMPLES = """
    INSERT INTO tag_samples (tag_id, ts, value, text_value, quality, reason, ingested_at)
    SELECT i, t, 5 + sin(extract(epoch FROM t) / 3600) + random() / 10, NULL,
           CASE WHEN i = 1 AND s % 997 = 0 THEN 0 ELSE 192 END,
           CASE WHEN i = 1 AND s % 997 = 0 THEN 'out of range [0, 8]' END, t
    FROM generate_series(0, :seconds - 1) AS s,
         LATERAL (SELECT :start + s * interval '1 second' AS t) AS slot,
         generate_series(1, :tags) AS i
    WHERE i = 1 OR s % 10 = 0
    ORDER BY s, i"""
BARE_GROUP_BY = """
    SELECT floor(extract(epoch FROM ts) / :width) AS b, min(value), avg(value), max(value)
    FROM tag_samples WHERE tag_id = :tag AND ts >= :start AND ts < :end
    GROUP BY b ORDER BY b"""
BARE_FETCH = """
    SELECT ts, value, quality FROM tag_samples
    WHERE tag_id = :tag AND ts >= :start AND ts < :end ORDER BY ts"""
COVERING = "CREATE INDEX ix_tag_samples_covering ON tag_samples (tag_id, ts) " \
           "INCLUDE (value, quality)"


def fill(engine: Engine, days: int, other_tags: int, end: datetime) -> int:
    params = {"tags": other_tags + 1, "seconds": days * 86400,
              "start": (end - timedelta(days=days)).replace(tzinfo=None)}
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text(FILL_TAGS), params)
        rows = conn.execute(text(FILL_SAMPLES), params).rowcount
    print(f"filled tag_samples: {rows:,} rows in {time.perf_counter() - started:.1f} s",
          flush=True)
    vacuum(engine)
    return rows


def vacuum(engine: Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE tag_samples"))


def cases(engine: Engine, tables: Tables, end: datetime) -> dict[str, tuple[Callable, Callable]]:
    """(the dashboard's query, its bare baseline) per range."""

    def run(fn: Callable, *args) -> Callable[[], object]:
        def call() -> object:
            with engine.connect() as conn:
                return fn(conn, tables, *args)
        return call

    def bare(sql: str, **params) -> Callable[[], object]:
        def call() -> object:
            with engine.connect() as conn:
                return conn.execute(text(sql), params).all()
        return call

    out = {}
    for label, span in (("30 days", timedelta(days=30)), ("24 h", timedelta(days=1))):
        start = end - span
        width = trend_width(span.total_seconds())
        window = {"tag": 1, "start": start.replace(tzinfo=None), "end": end.replace(tzinfo=None)}
        out[f"trend, {label} ({width} s buckets)"] = (
            run(q.tag_trend, [1], start, end, width),
            bare(BARE_GROUP_BY, width=width, **window))
        out[f"quality marks, {label}"] = (run(q.tag_marks, [1], start, end, width), None)
        out[f"quality per tag of the location, {label}"] = (
            run(q.tag_quality, "L0001", start, end), None)
        out[f"bare fetch of every point, {label}"] = (bare(BARE_FETCH, **window), None)
    return out


def plan(engine: Engine, tables: Tables, end: datetime, span: timedelta) -> list[str]:
    """The trend query's plan lines that name a scan, as PostgreSQL ran it."""
    width = trend_width(span.total_seconds())
    s = tables.tag_samples
    bucket = time_bucket(s.c.ts, width)
    stmt = (select(bucket, func.min(s.c.value), func.avg(s.c.value), func.max(s.c.value))
            .where(s.c.tag_id.in_([1]), s.c.ts >= end - span, s.c.ts < end)
            .group_by(bucket))
    sql = str(stmt.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        lines = [r[0] for r in conn.execute(text(f"EXPLAIN (ANALYZE, BUFFERS) {sql}"))]
    return [ln.strip() for ln in lines if "Scan" in ln or "Execution Time" in ln][:4]


def measure(engine: Engine, tables: Tables, end: datetime, repeat: int, title: str) -> None:
    print(f"\n{title}\nquery (median of {repeat}) | rows | ms | bare GROUP BY ms | ratio")
    for name, (ours, base) in cases(engine, tables, end).items():
        rows = len(ours())
        if base is None:
            ms = median_ms(ours, repeat if "fetch" not in name else max(1, repeat // 2))
            print(f"{name} | {rows:,} | {ms:.1f} | |", flush=True)
            continue
        base()  # warm both the same way
        # One run of each in turn, so a load change on the machine hits both alike.
        pairs = [(median_ms(ours, 1), median_ms(base, 1)) for _ in range(repeat)]
        ms, bare_ms = (statistics.median(p) for p in zip(*pairs, strict=True))
        print(f"{name} | {rows:,} | {ms:.1f} | {bare_ms:.1f} | {ms / bare_ms:.2f}x", flush=True)
    for label, span in (("30 days", timedelta(days=30)), ("24 h", timedelta(days=1))):
        print(f"plan of the trend, {label}:")
        for line in plan(engine, tables, end, span):
            print(f"    {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--other-tags", type=int, default=9)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-covering", action="store_true")
    args = parser.parse_args()
    server = os.environ.get("SHOPFLOOR_BENCH_PG_URL",
                            "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    end = datetime.now(UTC).replace(microsecond=0)
    url, engine = create_database(server)
    try:
        tables = init_db(engine)
        fill(engine, args.days, args.other_tags, end)
        measure(engine, tables, end, args.repeat, "primary key (tag_id, ts) only")
        if not args.no_covering:
            started = time.perf_counter()
            with engine.begin() as conn:
                conn.execute(text(COVERING))
            print(f"\ncovering index built in {time.perf_counter() - started:.1f} s")
            vacuum(engine)
            measure(engine, tables, end, args.repeat,
                    "with (tag_id, ts) INCLUDE (value, quality)")
    finally:
        engine.dispose()
        drop_database(server, url)


if __name__ == "__main__":
    main()
