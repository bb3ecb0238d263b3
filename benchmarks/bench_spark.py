"""Spark extraction benchmark: the flow vs a bare PySpark job vs pandas + pyarrow, per layout.

Seeds a historian in PostgreSQL (default 5 million rows: 500 tags over January and
February 2026, every 10th reading bad) server-side with generate_series, then extracts
the whole window three ways into local Parquet, for each layout asked (``--layouts``):
``date`` (``date=<day>/`` files, tag a column, sorted by tag and time) and ``tag``
(``tag=<key>/date=<day>/``):

  (a) the ``spark-sensor-extraction`` flow (Prefect ephemeral mode, local Spark),
  (b) a bare hand-written PySpark job producing the same layout from the same
      day-aligned JDBC ranges (the limit),
  (c) pandas reading through psycopg2 and writing the same layout with pyarrow.

(a) and (b) share one Spark session (same JVM, same settings) after a small warm-up
job. Every output is read back and its row count checked against the source. Then, for
each layout the flow wrote: its files, bytes, rows per row group, and the time DuckDB
takes to read one tag for one week (median of 5, a new connection each).

Usage:
    PREFECT_HOME=/tmp/bench-prefect SPARK_LOCAL_IP=127.0.0.1 \
      .venv/bin/python benchmarks/bench_spark.py [--tags 500] [--interval-s 510] \
      [--layouts date,tag] [--skip tag:b,tag:c]

``--skip`` takes ``a``, ``b``, ``c`` (every layout) or ``<layout>:<letter>``.

Not a test: figures go to benchmarks/README.md.
"""

import argparse
import os
import shutil
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

PG_SERVER = os.environ.get("SHOPFLOOR_BENCH_PG_URL",
                           "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
START, END = date(2026, 1, 1), date(2026, 2, 28)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tags", type=int, default=500)
    p.add_argument("--interval-s", type=int, default=510,
                   help="seconds between readings of a tag (510 gives ~10k per tag)")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--num-partitions", type=int, default=8)
    p.add_argument("--layouts", default="date,tag",
                   help="comma list of layouts to run: date, tag (the old comparison)")
    p.add_argument("--skip", default="",
                   help="comma list of a,b,c to skip, or layout:letter (e.g. tag:b)")
    return p.parse_args()


def create_database() -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"shopfloor_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(PG_SERVER).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def seed(url: str, tags: int, interval_s: int):
    from shopfloor.db.engine import make_engine
    from shopfloor.db.schema import get_tables
    from shopfloor.historian.seed import HistorianSeed, seed_historian

    engine = make_engine(url)
    spec = HistorianSeed(start=datetime(2026, 1, 1, tzinfo=UTC),
                         end=datetime(2026, 3, 1, tzinfo=UTC), n_tags=tags,
                         interval_s=interval_s)
    started = time.perf_counter()
    counts = seed_historian(engine, get_tables(None), spec)
    with engine.begin() as conn:
        for table in counts:
            conn.exec_driver_sql(f"ANALYZE {table}")
    print(f"seeded {sum(counts.values()):,} rows {counts} in "
          f"{time.perf_counter() - started:.1f} s")
    return engine


def good_count(engine) -> int:
    from sqlalchemy import text

    with engine.connect() as conn:
        return sum(conn.execute(text(
            f"SELECT count(*) FROM {t} WHERE dataintegrity = 192")).scalar()  # noqa: S608
            for t in ("sqlt_data_1_2026_01", "sqlt_data_1_2026_02"))


def output_rows(folder: str) -> tuple[int, int]:
    import pyarrow.dataset as ds

    dataset = ds.dataset(folder, format="parquet", partitioning="hive")
    return dataset.count_rows(), len(dataset.files)


def output_shape(folder: str) -> dict[str, float]:
    """Files, MiB, rows, row groups per file and rows per row group, bytes per row."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    files = ds.dataset(folder, format="parquet", partitioning="hive").files
    rows = groups = size = 0
    for path in files:
        meta = pq.ParquetFile(path).metadata
        rows, groups = rows + meta.num_rows, groups + meta.num_row_groups
        size += os.path.getsize(path)
    return {"files": len(files), "mib": size / 2**20, "rows": rows,
            "groups_per_file": groups / max(1, len(files)),
            "rows_per_group": rows / max(1, groups), "bytes_per_row": size / max(1, rows)}


def read_one_tag_week(folder: str, layout: str, tag: str, repeat: int = 5
                      ) -> tuple[float, int]:
    """Median seconds for DuckDB to read one tag's week (hive filters on tag and date),
    and the rows it found."""
    import statistics

    import duckdb

    glob = (f"{folder}/date=*/*.parquet" if layout == "date"
            else f"{folder}/tag=*/date=*/*.parquet")
    sql = ("SELECT count(*), avg(value) FROM read_parquet(?, hive_partitioning=true) "
           "WHERE tag = ? AND date BETWEEN DATE '2026-02-02' AND DATE '2026-02-08'")
    times, rows = [], 0
    for _ in range(repeat + 1):  # the first one warms the page cache, not counted
        con = duckdb.connect()
        started = time.perf_counter()
        rows = con.execute(sql, [glob, tag]).fetchone()[0]
        times.append(time.perf_counter() - started)
        con.close()
    return statistics.median(times[1:]), rows


def spark_session(master: str):
    from pyspark.sql import SparkSession

    from shopfloor.spark.session import local_worker_python, session_conf

    python = local_worker_python(master, os.environ)
    if python:
        os.environ["PYSPARK_PYTHON"] = python
    builder = SparkSession.builder.master(master).appName("bench-spark")
    for key, value in (session_conf("postgresql", {}) | {"spark.ui.enabled": "false",
                                                         "spark.driver.memory": "2g"}).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def run_flow(historian_block: str, lake_block: str, master: str, parts: int,
             layout: str, prefix: str, start: date = START, end: date = END) -> None:
    from flows.spark_extraction import spark_sensor_extraction

    spark_sensor_extraction(start=start, end=end, historian_db=historian_block,
                            lake=lake_block, spark_master=master, num_partitions=parts,
                            recheck_days=0, layout=layout, output_prefix=prefix)


def run_bare(spark, url: str, out: str, parts: int, layout: str) -> None:
    """What one would write by hand: JDBC range reads, filter, broadcast join, partitionBy.

    Both months in one job (one write), with no Prefect, no validation and no
    partition clean-up: the upper bound for the flow. The date layout gets the flow's
    sort, file size and row-group settings.
    """
    from pyspark.sql import functions as F

    from shopfloor.historian.lake import rows_per_file
    from shopfloor.spark.jdbc import jdbc_source
    from shopfloor.spark.writers import ROW_GROUP_BYTES

    src = jdbc_source(url)
    props = {"user": src.user or "", "driver": src.driver, "fetchsize": "10000"}
    frames = []
    day_ms = 86_400_000
    for table, lo, hi in (("sqlt_data_1_2026_01", date(2026, 1, 1), date(2026, 2, 1)),
                          ("sqlt_data_1_2026_02", date(2026, 2, 1), date(2026, 3, 1))):
        lo_ms = int(datetime(lo.year, lo.month, lo.day, tzinfo=UTC).timestamp() * 1000)
        days = (hi - lo).days
        # day-aligned ranges, as the flow does, so both write one file per (tag, date)
        cuts = [lo_ms + (i * days // parts) * day_ms for i in range(parts)] + [
            lo_ms + days * day_ms]
        predicates = [f"t_stamp >= {a} AND t_stamp < {b}"
                      for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
        frames.append(spark.read.jdbc(src.url, table, predicates=predicates,
                                      properties=props)
                      .select("tagid", "intvalue", "floatvalue", "dataintegrity", "t_stamp")
                      .where(F.col("dataintegrity") == 192))
    tags = spark.read.jdbc(src.url, "sqlth_te", properties=props).select(
        F.col("id").alias("tagid"), "tagpath")
    safe = F.regexp_replace("tagpath", "[^A-Za-z0-9_.-]+", "_")
    tags = tags.withColumn("tag", F.when(safe == F.col("tagpath"), safe).otherwise(
        F.concat(safe, F.lit("_"), F.substring(F.sha1("tagpath"), 1, 8))))
    df = (frames[0].unionByName(frames[1])
          .select("tagid", F.timestamp_millis("t_stamp").alias("ts"),
                  F.coalesce("floatvalue", F.col("intvalue").cast("double")).alias("value"),
                  "dataintegrity")
          .join(F.broadcast(tags), "tagid")
          .withColumn("date", F.date_format("ts", "yyyy-MM-dd")))
    if layout == "tag":
        (df.sortWithinPartitions("tag", "date", "ts").write.mode("overwrite")
           .partitionBy("tag", "date").parquet(out))
        return
    (df.sortWithinPartitions("date", "tag", "ts").write.mode("overwrite")
       .partitionBy("date").option("maxRecordsPerFile", rows_per_file(128))
       .option("parquet.block.size", ROW_GROUP_BYTES).parquet(out))


def run_pandas_by_day(url: str, out: str) -> None:
    """The date layout with pandas: one query per UTC day (index on t_stamp), the tags
    merged, sorted by (tag, ts), one pyarrow file per day in the flow's row groups."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sqlalchemy import create_engine, text

    from shopfloor.historian.lake import ROW_GROUP_ROWS
    from shopfloor.historian.plan import epoch_ms
    from shopfloor.historian.tags import partition_key

    engine = create_engine(url)
    with engine.connect() as conn:
        tags = pd.read_sql("SELECT id AS tagid, tagpath FROM sqlth_te", conn)
    tags["tag"] = tags["tagpath"].map(partition_key)
    day = START
    with engine.connect() as conn:
        while day <= END:
            table = f"sqlt_data_1_{day.year:04d}_{day.month:02d}"
            lo = epoch_ms(day)
            query = text(f"SELECT tagid, intvalue, floatvalue, dataintegrity, t_stamp "  # noqa: S608
                         f"FROM {table} WHERE dataintegrity = 192 "
                         "AND t_stamp >= :lo AND t_stamp < :hi")
            chunk = pd.read_sql(query, conn, params={"lo": lo, "hi": lo + 86_400_000})
            chunk["ts"] = pd.to_datetime(chunk["t_stamp"], unit="ms", utc=True)
            chunk["value"] = chunk["floatvalue"].fillna(chunk["intvalue"].astype("float64"))
            chunk = chunk.merge(tags, on="tagid").sort_values(["tag", "ts"])[
                ["tagid", "tagpath", "ts", "value", "dataintegrity", "tag"]]
            folder = os.path.join(out, f"date={day.isoformat()}")
            os.makedirs(folder, exist_ok=True)
            pq.write_table(pa.Table.from_pandas(chunk, preserve_index=False),
                           os.path.join(folder, "part-00000.parquet"),
                           row_group_size=ROW_GROUP_ROWS, compression="snappy")
            day += timedelta(days=1)
    engine.dispose()


def run_pandas(url: str, out: str, chunk_rows: int = 250_000) -> None:
    """The tag layout with pandas: psycopg2 (server-side cursor, chunks), pyarrow
    write_to_dataset."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sqlalchemy import create_engine

    from shopfloor.historian.tags import partition_key

    engine = create_engine(url)
    with engine.connect() as conn:
        tags = pd.read_sql("SELECT id AS tagid, tagpath FROM sqlth_te", conn)
    tags["tag"] = tags["tagpath"].map(partition_key)
    n = 0
    for table in ("sqlt_data_1_2026_01", "sqlt_data_1_2026_02"):
        with engine.connect().execution_options(stream_results=True) as conn:
            query = (f"SELECT tagid, intvalue, floatvalue, dataintegrity, t_stamp "  # noqa: S608
                     f"FROM {table} WHERE dataintegrity = 192")
            for chunk in pd.read_sql(query, conn, chunksize=chunk_rows):
                chunk["ts"] = pd.to_datetime(chunk["t_stamp"], unit="ms", utc=True)
                chunk["value"] = chunk["floatvalue"].fillna(chunk["intvalue"].astype("float64"))
                chunk["date"] = chunk["ts"].dt.strftime("%Y-%m-%d")
                chunk = chunk.merge(tags, on="tagid")[
                    ["tagid", "tagpath", "ts", "value", "dataintegrity", "tag", "date"]]
                pq.write_to_dataset(pa.Table.from_pandas(chunk, preserve_index=False), out,
                                    partition_cols=["tag", "date"],
                                    basename_template=f"part-{n:05d}-{{i}}.parquet",
                                    max_partitions=1_000_000)
                n += 1
    engine.dispose()


def timed(label: str, fn, rows_expected: int, folder: str) -> float:
    started = time.perf_counter()
    fn()
    seconds = time.perf_counter() - started
    rows, files = output_rows(folder)
    status = "OK" if rows == rows_expected else f"MISMATCH (expected {rows_expected:,})"
    print(f"{label}: {seconds:7.1f} s  {rows / seconds:10,.0f} rows/s  "
          f"{rows:,} rows in {files:,} files  {status}")
    return seconds


def skipped(skip: set[str], layout: str, letter: str) -> bool:
    return letter in skip or f"{layout}:{letter}" in skip


def run_layout(layout: str, args, skip: set[str], spark, url: str, hist: str, lake: str,
               work: str, expected: int) -> dict[str, float]:
    """(b), (a), (c) in one layout; seconds of each that ran."""
    figures = {}
    if not skipped(skip, layout, "b"):
        out_b = os.path.join(work, f"bare_{layout}")
        figures["b"] = timed(f"[{layout}] (b) bare PySpark", lambda: run_bare(
            spark, url, out_b, args.num_partitions, layout), expected, out_b)
    if not skipped(skip, layout, "a"):
        figures["a"] = timed(f"[{layout}] (a) flow        ", lambda: run_flow(
            hist, lake, args.master, args.num_partitions, layout, f"flow_{layout}"),
            expected, os.path.join(work, "lake", f"flow_{layout}"))
    if not skipped(skip, layout, "c"):
        out_c = os.path.join(work, f"pandas_{layout}")
        pandas = run_pandas_by_day if layout == "date" else run_pandas
        figures["c"] = timed(f"[{layout}] (c) pandas      ", lambda: pandas(url, out_c),
                             expected, out_c)
    if "a" in figures and "b" in figures:
        print(f"[{layout}] throughput (a)/(b) = {figures['b'] / figures['a']:.2f}x "
              "(goal >= 0.85)")
    if "a" in figures and "c" in figures:
        print(f"[{layout}] throughput (a)/(c) = {figures['c'] / figures['a']:.2f}x "
              "(goal >= 1: the flow no slower than pandas)")
    if "c" in figures and "b" in figures:
        print(f"[{layout}] throughput (c)/(b) = {figures['b'] / figures['c']:.2f}x")
    return figures


def report_reads(work: str, layouts: list[str]) -> None:
    """Files and one-tag-week DuckDB reads of every output that was written."""
    from shopfloor.historian.tags import partition_key

    tag = partition_key("line2/sensor_0001")
    for layout in layouts:
        for who in ("flow", "bare", "pandas"):
            folder = os.path.join(work, "lake", f"flow_{layout}") if who == "flow" else (
                os.path.join(work, f"{who}_{layout}"))
            if not os.path.isdir(folder):
                continue
            shape = output_shape(folder)
            seconds, rows = read_one_tag_week(folder, layout, tag)
            print(f"[{layout}] {who:<6}: {shape['files']:,} files, {shape['mib']:.1f} MiB, "
                  f"{shape['groups_per_file']:.1f} row groups/file of "
                  f"{shape['rows_per_group']:,.0f} rows, {shape['bytes_per_row']:.1f} B/row; "
                  f"DuckDB one tag x one week: {seconds * 1000:.0f} ms ({rows} rows)")


def main() -> None:
    args = parse_args()
    skip = set(filter(None, args.skip.split(",")))
    layouts = [x for x in args.layouts.split(",") if x]
    work = tempfile.mkdtemp(prefix="bench-spark-")
    url = create_database()
    try:
        engine = seed(url, args.tags, args.interval_s)
        expected = good_count(engine)
        from prefect.filesystems import LocalFileSystem

        from blocks.bootstrap import connector_from_url

        hist, lake = f"bench-hist-{uuid.uuid4().hex[:6]}", f"bench-lake-{uuid.uuid4().hex[:6]}"
        connector_from_url(url).save(hist, overwrite=True)
        LocalFileSystem(basepath=os.path.join(work, "lake")).save(lake, overwrite=True)
        spark = spark_session(args.master)
        # warm-up: JVM, JDBC driver, Python workers, Parquet writer (one day, not timed)
        for layout in layouts:
            run_flow(hist, lake, args.master, args.num_partitions, layout, f"warmup_{layout}",
                     START, START)
        for layout in layouts:
            run_layout(layout, args, skip, spark, url, hist, lake, work, expected)
        report_reads(work, layouts)
        spark.stop()
    finally:
        drop_database(url)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
