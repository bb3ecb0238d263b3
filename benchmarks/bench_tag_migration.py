"""`db init --upgrade`'s copy of temperature_raw into tag_samples against a bare
``INSERT .. SELECT`` of the same rows, on PostgreSQL, in one process.

    .venv/bin/python benchmarks/bench_tag_migration.py [--readings 1000000] [--pg-url URL]

Creates a scratch database, fills ``temperature_raw`` with ``--readings`` readings
(20 locations, 5 s apart) by ``generate_series``, then times:

- the baseline: one ``INSERT INTO tag_samples .. SELECT`` per column over the whole
  table (no batches, no anti-join), in one transaction, into an empty table;
- ``shopfloor.tags.migrate.migrate_raw`` (batches of 20 000 readings per location,
  each committed, the key anti-join) into an empty table;
- ``migrate_raw`` again (everything already there: what a rerun costs).

Prints the times and the ratios to the baseline.
"""

import argparse
import time
import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from shopfloor.db.engine import init_db, make_engine
from shopfloor.tags.migrate import MEASURES, migrate_raw

LOCATIONS = 20


def fill(engine, readings: int) -> None:
    per = readings // LOCATIONS
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO temperature_raw (loc_id, capture_dt, temperature, humidity, "
            "pcv_temperature, device, ingested_at) "
            "SELECT 'L' || lpad(l::text, 3, '0'), timestamp '2026-01-01' + k * interval '5 s', "
            "20 + (k % 97) / 10.0, 40 + (k % 53) / 10.0, "
            "CASE WHEN k % 101 = 0 THEN NULL ELSE 30 + (k % 31) / 10.0 END, NULL, "
            "timestamp '2026-01-01' + k * interval '5 s' "
            "FROM generate_series(1, :locs) l, generate_series(0, :per - 1) k"),
            {"locs": LOCATIONS, "per": per})
        conn.execute(text("ANALYZE temperature_raw"))
        conn.execute(text("SELECT count(*), sum(temperature) FROM temperature_raw"))  # warm


def bare(engine) -> float:
    """The baseline: tags by hand, one INSERT .. SELECT per column, no anti-join."""
    start = time.perf_counter()
    with engine.begin() as conn:
        for i, m in enumerate(MEASURES):
            conn.execute(text(
                f"INSERT INTO tag_samples (tag_id, ts, value, quality, ingested_at) "
                f"SELECT 1000 * {i} + CAST(substr(loc_id, 2) AS integer), capture_dt, {m}, "
                f"CASE WHEN {m} IS NULL THEN 0 ELSE 192 END, ingested_at "
                f"FROM temperature_raw"))
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--readings", type=int, default=1_000_000)
    ap.add_argument("--pg-url", default="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()
    name = f"shopfloor_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(make_url(args.pg_url).set(database=name))
    try:
        tables = init_db(engine)
        fill(engine, args.readings)
        base = bare(engine)
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE tag_samples"))
        start = time.perf_counter()
        report = migrate_raw(engine, tables)
        first = time.perf_counter() - start
        start = time.perf_counter()
        again = migrate_raw(engine, tables)
        rerun = time.perf_counter() - start
        samples = sum(report.samples.values())
        assert samples == 3 * report.readings and sum(again.samples.values()) == 0
        print(f"readings: {report.readings:,}, samples: {samples:,}, "
              f"batches: {report.batches}")
        print(f"bare INSERT .. SELECT : {base:8.2f} s  {samples / base:>12,.0f} samples/s")
        print(f"migrate_raw           : {first:8.2f} s  {samples / first:>12,.0f} samples/s "
              f"({first / base:.2f}x the bare time)")
        print(f"migrate_raw, rerun    : {rerun:8.2f} s  ({rerun / base:.2f}x; adds nothing)")
    finally:
        engine.dispose()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
