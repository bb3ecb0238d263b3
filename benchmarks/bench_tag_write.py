"""Benchmark: writing tag samples as capture and the forwarders do, against a bare COPY
of the same rows into the same table (not a test).

N tag samples (``--tags`` tags, one point a slot each; 96 % good numbers, 2 % bad out of
range with a reason, 2 % text) are written into ``tag_samples`` (its primary key
``(tag_id, ts)`` and its ``ingested_at`` index in place) in batches of ``--batch-slots``
slots of every tag, one transaction per batch, the table emptied before each run:

(a) the tag path: :func:`shopfloor.modbus.tag_points.write_points` on the batch's
    ``Points`` (numpy columns, what ``tag_points`` gives the sinks): its CSV built from
    the columns, then ``COPY`` straight into the table inside a savepoint (the path every
    new batch takes; a replayed one falls back to a temporary table and an upsert);
(b) the baseline: a hand-written writer that gets the same rows as Python tuples and
    writes them with ``csv.writer`` and one ``COPY`` (no savepoint, no upsert fallback);
(c) the floor: ``COPY`` of (b)'s CSV text built before the clock starts (the server's
    share alone).

Runs are interleaved (a, b, c, a, b, c, ...) so a busy moment of the machine hits all
three; the medians are compared. The issue's target is (a) at least 0.8x the speed of
(b).

Usage::

    .venv/bin/python benchmarks/bench_tag_write.py --samples 10000000 --tags 200

The database (``shopfloor_bench_tagwrite_<random>`` on ``$SHOPFLOOR_BENCH_PG_URL``,
default the local PostgreSQL) is dropped at the end.
"""

import argparse
import csv
import io
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from shopfloor.db.engine import init_db, make_engine
from shopfloor.db.schema import Tables
from shopfloor.modbus.tag_points import COLUMNS, Points, write_points

START_MS = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
REASON = "out of range [0, 10]"


def batch_points(first_slot: int, slots: int, tags: int, rng: np.random.Generator) -> Points:
    """``slots`` one-second slots of ``tags`` tags, tag by tag (as ``tag_points``)."""
    n = slots * tags
    kind = rng.random(n)
    value = np.round(rng.uniform(0, 100, n), 3)
    text_ = [None] * n
    quality = np.full(n, 192, np.int16)
    reason: list[str | None] = [None] * n
    for i in np.flatnonzero(kind < 0.02).tolist():
        quality[i], reason[i] = 0, REASON
    for i in np.flatnonzero(kind > 0.98).tolist():
        value[i], text_[i] = np.nan, f"recipe-{i % 7}"
    tag_id = np.repeat(np.arange(1, tags + 1, dtype=np.int64), slots)
    ms = np.tile(START_MS + 1000 * np.arange(first_slot, first_slot + slots, dtype=np.int64),
                 tags)
    return Points(tag_id, ms, value, text_, quality, reason)


def as_tuples(points: Points, ingested_at: datetime) -> list[tuple]:
    """The same rows as a hand-written writer would hold them."""
    values = [None if v != v else v for v in points.value.tolist()]
    return [(t, datetime.fromtimestamp(m / 1000, UTC).replace(tzinfo=None), v, x, q, r,
             ingested_at.replace(tzinfo=None))
            for t, m, v, x, q, r in zip(points.tag_id.tolist(), points.ms.tolist(), values,
                                        points.text, points.quality.tolist(), points.reason,
                                        strict=True)]


def bare_csv(rows: list[tuple]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


def copy_text(engine: Engine, payload: str) -> None:
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            cur.copy_expert(f"COPY tag_samples ({', '.join(COLUMNS)}) FROM STDIN "
                            "WITH (FORMAT csv)", io.StringIO(payload))
        raw.commit()
    finally:
        raw.close()


def batches(samples: int, tags: int, slots: int) -> Iterator[Points]:
    rng = np.random.default_rng(42)
    total_slots = samples // tags
    for first in range(0, total_slots, slots):
        yield batch_points(first, min(slots, total_slots - first), tags, rng)


def run(engine: Engine, tables: Tables, data: list[Points], kind: str) -> float:
    """Seconds to write ``data`` one way (preparation of the inputs not counted)."""
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE tag_samples"))
    now = datetime.now(UTC)
    inputs: list[object] = data
    if kind == "bare":
        inputs = [as_tuples(p, now) for p in data]
    elif kind == "floor":
        inputs = [bare_csv(as_tuples(p, now)) for p in data]
    started = time.perf_counter()
    for item in inputs:
        if kind == "tag":
            with engine.begin() as conn:
                write_points(conn, tables.tag_samples, item, now)  # type: ignore[arg-type]
        elif kind == "bare":
            copy_text(engine, bare_csv(item))  # type: ignore[arg-type]
        else:
            copy_text(engine, item)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    with engine.connect() as conn:
        written = conn.execute(text("SELECT count(*) FROM tag_samples")).scalar_one()
    assert written == sum(len(p) for p in data), (kind, written)
    return seconds


def timed_runs(repeat: int, runs: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeat):
        for key, fn in runs.items():
            out[key].append(fn())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=10_000_000)
    p.add_argument("--tags", type=int, default=200)
    p.add_argument("--batch-slots", type=int, default=500)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    server = os.environ.get("SHOPFLOOR_BENCH_PG_URL",
                            "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    name = f"shopfloor_bench_tagwrite_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(make_url(server).set(database=name).render_as_string(False))
    try:
        tables = init_db(engine, only=["tags", "tag_samples"])
        data = list(batches(a.samples, a.tags, a.batch_slots))
        n = sum(len(b) for b in data)
        print(f"{n:,} samples, {a.tags} tags, {len(data)} batches of {len(data[0]):,}")
        results = timed_runs(a.repeat, {k: (lambda k=k: run(engine, tables, data, k))
                                        for k in ("tag", "bare", "floor")})
        bare = statistics.median(results["bare"])
        for key, label in (("tag", "(a) write_points (tag path)"),
                           ("bare", "(b) bare csv.writer + COPY"),
                           ("floor", "(c) COPY of prebuilt CSV")):
            runs = results[key]
            med = statistics.median(runs)
            print(f"{label}: median {med:.2f} s, runs {', '.join(f'{r:.2f}' for r in runs)}; "
                  f"{n / med:,.0f} samples/s; speed {bare / med:.2f}x (b)")
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
