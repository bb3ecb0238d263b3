"""Benchmark: the hourly tag rollup on PostgreSQL against one bare GROUP BY (not a test).

N tag samples (``--tags`` tags, one point a second each, 90 % good, 5 % uncertain,
5 % bad, 2 % without a number) are generated into ``tag_samples``. Then, ``--repeat``
times each, on the same database:

(a) the rollup as the ``hourly-aggregation`` flow runs it with no watermark yet
    (:func:`shopfloor.aggregation.tag_rollup.roll_up_database`): the GROUP BY into a
    temporary table, the first and last values by primary key, the upsert into
    ``tag_hourly``, the days from the hours into ``tag_daily``, the watermark;
    ``tag_hourly``/``tag_daily`` emptied before each run;
(b) the baseline: one bare ``INSERT INTO scratch SELECT ... GROUP BY tag_id,
    date_trunc('hour', ts)`` of the same aggregates (counts, good count, count/sum/min/
    max/avg of the good numbers, the times of the first and last of them) into a scratch
    table, truncated before each run. A bare GROUP BY has no first/last *value*: those
    are the rollup's two primary-key lookups per group, counted against it;
(c) the late-data path at its worst: the watermark set before every sample, so every
    sample is "new" and the rollup first lists the (tag, hour) pairs by ``ingested_at``,
    then reads each pair by its primary-key range (two passes over the rows).

Both (a)/(b) and (c)/(b) are reported as ratios of the medians. The issue's target is
(a) at most 1.2x (b).

Usage::

    .venv/bin/python benchmarks/bench_tag_rollup.py --samples 10000000 --tags 200

The database (``shopfloor_bench_tagroll_<random>`` on ``$SHOPFLOOR_BENCH_PG_URL``, default
the local PostgreSQL) is dropped at the end.
"""

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, create_engine, delete, func, select, text
from sqlalchemy.engine import make_url

from shopfloor.aggregation.tag_rollup import WATERMARK, roll_up_database
from shopfloor.db.engine import init_db, make_engine
from shopfloor.db.schema import Tables
from shopfloor.db.watermark import set_watermark
from shopfloor.settings import aggregation_work_mem

START = datetime(2024, 1, 1, tzinfo=UTC)

GENERATE = """
SELECT setseed(0.42);
INSERT INTO tag_samples (tag_id, ts, value, text_value, quality, reason, ingested_at)
SELECT t, :start + s * interval '1 second',
       CASE WHEN r < 0.02 THEN NULL ELSE round((100 * random())::numeric, 3) END,
       NULL, CASE WHEN r < 0.90 THEN 192 WHEN r < 0.95 THEN 64 ELSE 0 END,
       CASE WHEN r < 0.90 THEN NULL ELSE 'bench' END,
       :start + s * interval '1 second' + interval '2 seconds'
FROM (SELECT s, t, random() AS r
      FROM generate_series(0, :seconds - 1) AS s, generate_series(1, :tags) AS t) g
"""

SCRATCH = """
CREATE TABLE scratch_hourly (
    tag_id bigint, period_start timestamp, sample_count bigint, good_count bigint,
    value_count bigint, value_sum double precision, value_min double precision,
    value_max double precision, value_avg double precision, first_ts timestamp,
    last_ts timestamp, updated_at timestamp)
"""

BARE = """
INSERT INTO scratch_hourly
SELECT tag_id, date_trunc('hour', ts), count(*),
       sum(CASE WHEN quality = 192 THEN 1 ELSE 0 END),
       count(v), sum(v), min(v), max(v), avg(v), min(vt), max(vt), now()
FROM (SELECT tag_id, ts, quality,
             CASE WHEN quality = 192 AND value IS NOT NULL THEN value END AS v,
             CASE WHEN quality = 192 AND value IS NOT NULL THEN ts END AS vt
      FROM tag_samples) s
GROUP BY tag_id, date_trunc('hour', ts)
"""


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def generate(engine: Engine, samples: int, tags: int) -> int:
    seconds = max(1, samples // tags)
    with engine.begin() as conn:
        for stmt in GENERATE.strip().split(";\n"):
            conn.execute(text(stmt), {"start": START.replace(tzinfo=None), "seconds": seconds,
                                      "tags": tags})
        conn.execute(text(SCRATCH))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE tag_samples"))
    return seconds * tags


def run_rollup(engine: Engine, tables: Tables, watermark: datetime | None) -> float:
    with engine.begin() as conn:
        conn.execute(delete(tables.tag_hourly))
        conn.execute(delete(tables.tag_daily))
        conn.execute(delete(tables.pipeline_watermark))
        if watermark is not None:
            set_watermark(conn, tables, WATERMARK, watermark.isoformat())
    seconds, stats = timed(lambda: roll_up_database(engine, tables, datetime.now(UTC)))
    assert stats.hours_written == stats.hours > 0, stats
    return seconds


def run_bare(engine: Engine) -> float:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE scratch_hourly"))
    def bare() -> None:
        with engine.begin() as conn:
            work_mem = aggregation_work_mem()  # the rollup's own setting, for a fair race
            if work_mem:
                conn.execute(select(func.set_config("work_mem", work_mem, True)))
            conn.execute(text(BARE))
    return timed(bare)[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=10_000_000)
    p.add_argument("--tags", type=int, default=200)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--skip-late", action="store_true", help="do not run (c)")
    a = p.parse_args()
    server = os.environ.get("SHOPFLOOR_BENCH_PG_URL",
                            "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    name = f"shopfloor_bench_tagroll_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(make_url(server).set(database=name).render_as_string(False))
    try:
        tables = init_db(engine)
        load, n = timed(lambda: generate(engine, a.samples, a.tags))
        with engine.connect() as conn:
            groups = conn.execute(text(
                "SELECT count(*) FROM (SELECT DISTINCT tag_id, date_trunc('hour', ts) "
                "FROM tag_samples) g")).scalar_one()
        print(f"{n:,} samples, {a.tags} tags, {groups:,} (tag, hour) groups; "
              f"generated in {load:.1f} s")
        results: dict[str, list[float]] = {"rollup": [], "bare": [], "late": []}
        before_all = START - timedelta(hours=1)
        for _ in range(a.repeat):  # interleaved, so a busy moment hits both
            results["bare"].append(run_bare(engine))
            results["rollup"].append(run_rollup(engine, tables, None))
            if not a.skip_late:
                results["late"].append(run_rollup(engine, tables, before_all))
        bare = statistics.median(results["bare"])
        for key, label in (("rollup", "(a) rollup, no watermark (the first run)"),
                           ("bare", "(b) bare INSERT .. SELECT .. GROUP BY"),
                           ("late", "(c) rollup, every sample late")):
            runs = results[key]
            if not runs:
                continue
            med = statistics.median(runs)
            print(f"{label}: median {med:.2f} s, best {min(runs):.2f} s, runs "
                  f"{', '.join(f'{r:.2f}' for r in runs)}; {med / bare:.2f}x (b); "
                  f"{n / med:,.0f} samples/s")
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
