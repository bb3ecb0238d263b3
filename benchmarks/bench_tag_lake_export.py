"""Benchmark: the tag lake export against a bare COPY to Parquet (not a test).

N tag samples (``--tags`` tags, one point a second each) are generated into
``tag_samples`` on PostgreSQL. Then, ``--repeat`` times each, into fresh local folders:

(a) the first export (:func:`shopfloor.tags.lake_export.export`, no watermark yet):
    every sample, one (tag, month) at a time by its primary-key range, staged,
    published through the manifest, the watermark moved;
(b) the baseline: one ``COPY (SELECT ... ) TO STDOUT`` of the same rows, read by
    pyarrow's CSV reader and written as one Parquet file per tag (no staging, no
    manifest, no checks);
(c) an hourly run: one more hour of samples of every tag appended after (a).

(a)/(b) is reported as the ratio of the medians, (c) in seconds.

Usage::

    .venv/bin/python benchmarks/bench_tag_lake_export.py --samples 1000000 --tags 20

The database (``shopfloor_bench_taglake_<random>`` on ``$SHOPFLOOR_BENCH_PG_URL``,
default the local PostgreSQL) is dropped at the end.
"""

import argparse
import io
import os
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from shopfloor.db.engine import init_db, make_engine
from shopfloor.storage import StorageLocation
from shopfloor.tags.lake_export import SCHEMA, export

START = datetime(2026, 1, 1, tzinfo=UTC)
GENERATE = """
INSERT INTO tag_samples (tag_id, ts, value, text_value, quality, reason, ingested_at)
SELECT t, :start + s * interval '1 second', round((100 * random())::numeric, 3), NULL,
       192, NULL, :ingested
FROM generate_series(:first, :last) AS s, generate_series(1, :tags) AS t
"""
COPY = ("COPY (SELECT tag_id, ts, value, text_value, quality, reason, ingested_at "
        "FROM tag_samples ORDER BY tag_id, ts) TO STDOUT WITH (FORMAT csv)")


def generate(engine: Engine, first: int, last: int, tags: int, ingested: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(text(GENERATE), {"start": START.replace(tzinfo=None), "first": first,
                                      "last": last, "tags": tags,
                                      "ingested": ingested.replace(tzinfo=None)})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE tag_samples"))


def bare(engine: Engine, root: Path) -> int:
    raw = engine.raw_connection()
    try:
        buf = io.BytesIO()
        raw.cursor().copy_expert(COPY, buf)
    finally:
        raw.close()
    buf.seek(0)
    # The columns are naive UTC (UtcDateTime): read them naive, then say they are UTC.
    naive = {f.name: pa.timestamp("us") if pa.types.is_timestamp(f.type) else f.type
             for f in SCHEMA}
    table = pacsv.read_csv(buf, read_options=pacsv.ReadOptions(column_names=SCHEMA.names),
                           convert_options=pacsv.ConvertOptions(column_types=naive))
    table = table.cast(SCHEMA)
    for tag in pc.unique(table["tag_id"]).to_pylist():
        folder = root / f"tag_id={tag}" / "month=2026-01"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.filter(pc.equal(table["tag_id"], tag)), folder / "part-0.parquet",
                       compression="zstd")
    return table.num_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--tags", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    server = os.environ.get("SHOPFLOOR_BENCH_PG_URL",
                            "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    name = f"shopfloor_bench_taglake_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    work = Path(tempfile.mkdtemp(prefix="bench-taglake-"))
    try:
        tables = init_db(engine)
        seconds = args.samples // args.tags
        loaded = START + timedelta(seconds=seconds)
        generate(engine, 0, seconds - 1, args.tags, loaded)
        now = loaded + timedelta(hours=1)
        a, b, c = [], [], []
        for i in range(args.repeat):
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM pipeline_watermark"))
            lake = StorageLocation("local", str(work / f"a{i}"))
            t0 = time.perf_counter()
            stats = export(engine, tables, lake, "tag_samples", now, f"bench{i}")
            a.append(time.perf_counter() - t0)
            assert stats.samples == seconds * args.tags, stats.summary()
            t0 = time.perf_counter()
            rows = bare(engine, work / f"b{i}")
            b.append(time.perf_counter() - t0)
            assert rows == stats.samples
        hour_ingested = now + timedelta(minutes=1)
        generate(engine, seconds, seconds + 3599, args.tags, hour_ingested)
        lake = StorageLocation("local", str(work / f"a{args.repeat - 1}"))
        t0 = time.perf_counter()
        stats = export(engine, tables, lake, "tag_samples", now + timedelta(hours=1), "hour")
        c.append(time.perf_counter() - t0)
        assert stats.appended == args.tags and stats.upserted == 0, stats.summary()
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"samples {seconds * args.tags:,}, tags {args.tags}")
        rate = seconds * args.tags / ma
        print(f"(a) export, first run    median {ma:.2f} s  ({rate:,.0f} rows/s)")
        print(f"(b) bare COPY -> Parquet median {mb:.2f} s")
        print(f"(a)/(b) = {ma / mb:.2f}x")
        print(f"(c) hourly run, {3600 * args.tags:,} new samples appended: {c[0]:.2f} s")
    finally:
        engine.dispose()
        shutil.rmtree(work, ignore_errors=True)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
