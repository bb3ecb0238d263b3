"""Batch upsert vs one statement per row, into PostgreSQL, in one process.

    .venv/bin/python benchmarks/bench_upsert.py [--rows 100000] [--pg-url URL]

Creates a scratch database, upserts ``--rows`` rows into ``temperature_hourly`` with
``shopfloor.db.upsert.upsert`` (insert, then the same keys again as updates), then a
baseline that sends one INSERT ... ON CONFLICT per row over a 10,000-row slice.
Prints rows/s, statements sent (database round trips) and the ratio.
"""

import argparse
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import create_engine, event, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url

from shopfloor.db.engine import init_db, make_engine
from shopfloor.db.upsert import upsert

KEYS = ["loc_id", "ymd", "hh"]


def rows(n: int, value: float) -> list[dict]:
    now = datetime.now(UTC)
    return [
        {"loc_id": f"L{i % 200:04d}", "ymd": f"2026{1 + (i // 200 // 24 // 28) % 12:02d}"
         f"{1 + (i // 200 // 24) % 28:02d}", "hh": f"{(i // 200) % 24:02d}",
         "temperature_max": value + i % 7, "temperature_avg": value, "humidity_max": 50.0,
         "humidity_avg": 45.0, "pcv_temperature_max": 30.0, "pcv_temperature_avg": 29.0,
         "sample_count": 60, "updated_at": now}
        for i in range(n)
    ]


def timed(engine, fn) -> tuple[float, int]:
    count = [0]

    def on_execute(*_args):
        count[0] += 1

    event.listen(engine, "before_cursor_execute", on_execute)
    start = time.perf_counter()
    with engine.begin() as conn:
        fn(conn)
    elapsed = time.perf_counter() - start
    event.remove(engine, "before_cursor_execute", on_execute)
    return elapsed, count[0]


def row_by_row(conn, table, batch: list[dict]) -> None:
    for r in batch:
        stmt = postgresql.insert(table).values(**r)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=KEYS, set_={c: stmt.excluded[c] for c in r if c not in KEYS}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--pg-url", default="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()
    name = f"shopfloor_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(make_url(args.pg_url).set(database=name))
    try:
        table = init_db(engine).temperature_hourly
        data = rows(args.rows, 20.0)
        ins, ins_stmts = timed(engine, lambda c: upsert(c, table, data, KEYS))
        upd_data = rows(args.rows, 21.0)
        upd, upd_stmts = timed(engine, lambda c: upsert(c, table, upd_data, KEYS))
        sample = rows(10_000, 22.0)
        base, base_stmts = timed(engine, lambda c: row_by_row(c, table, sample))
        base_rate = len(sample) / base
        print(f"rows: {args.rows:,}")
        print(f"batch upsert, insert : {args.rows / ins:>10,.0f} rows/s, {ins_stmts} statements")
        print(f"batch upsert, update : {args.rows / upd:>10,.0f} rows/s, {upd_stmts} statements")
        print(f"row by row (10,000)  : {base_rate:>10,.0f} rows/s, {base_stmts} statements")
        print(f"speed-up: insert {args.rows / ins / base_rate:.1f}x, "
              f"update {args.rows / upd / base_rate:.1f}x")
    finally:
        engine.dispose()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
