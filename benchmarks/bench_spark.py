"""Spark extraction benchmark: the flow vs a bare PySpark job vs pandas + pyarrow.

Seeds a historian in PostgreSQL (default 5 million rows: 500 tags over January and
February 2026, every 10th reading bad) server-side with generate_series, then extracts
the whole window three ways into local Parquet partitioned by tag and date:

  (a) the ``spark-sensor-extraction`` flow (Prefect ephemeral mode, local Spark),
  (b) a bare hand-written PySpark job producing the same partitions (the limit),
  (c) pandas reading through psycopg2 in chunks and writing with pyarrow.

(a) and (b) share one Spark session (same JVM, same settings) after a small warm-up
job. Every output is read back and its row count checked against the source.

Usage:
    PREFECT_HOME=/tmp/bench-prefect SPARK_LOCAL_IP=127.0.0.1 \
      .venv/bin/python benchmarks/bench_spark.py [--tags 500] [--interval-s 510]

Not a test: figures go to benchmarks/README.md.
"""

import argparse
import os
import shutil
import tempfile
import time
import uuid
from datetime import UTC, date, datetime

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
    p.add_argument("--skip", default="", help="comma list of a,b,c to skip")
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
             start: date = START, end: date = END) -> None:
    from flows.spark_extraction import spark_sensor_extraction

    spark_sensor_extraction(start=start, end=end, historian_db=historian_block,
                            lake=lake_block, spark_master=master, num_partitions=parts,
                            recheck_days=0)


def run_bare(spark, url: str, out: str, parts: int) -> None:
    """What one would write by hand: JDBC range reads, filter, broadcast join, partitionBy.

    Both months in one job (one write), with no Prefect, no validation and no
    partition clean-up: the upper bound for the flow.
    """
    from pyspark.sql import functions as F

    from shopfloor.spark.jdbc import jdbc_source

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
    (df.sortWithinPartitions("tag", "date", "ts").write.mode("overwrite")
       .partitionBy("tag", "date").parquet(out))


def run_pandas(url: str, out: str, chunk_rows: int = 250_000) -> None:
    """pandas through psycopg2 (server-side cursor, chunks), pyarrow write_to_dataset."""
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


def main() -> None:
    args = parse_args()
    skip = set(args.skip.split(","))
    work = tempfile.mkdtemp(prefix="bench-spark-")
    url = create_database()
    try:
        engine = seed(url, args.tags, args.interval_s)
        expected = good_count(engine)
        from prefect.filesystems import LocalFileSystem

        from blocks.bootstrap import connector_from_url

        hist, lake = f"bench-hist-{uuid.uuid4().hex[:6]}", f"bench-lake-{uuid.uuid4().hex[:6]}"
        connector_from_url(url).save(hist, overwrite=True)
        LocalFileSystem(basepath=os.path.join(work, "a")).save(lake, overwrite=True)
        spark = spark_session(args.master)
        # warm-up: JVM, JDBC driver, Python workers, Parquet writer (one day, not timed)
        run_flow(hist, lake, args.master, args.num_partitions, START, START)
        shutil.rmtree(os.path.join(work, "a"), ignore_errors=True)
        figures = {}
        if "b" not in skip:
            out_b = os.path.join(work, "b")
            figures["b"] = timed("(b) bare PySpark", lambda: run_bare(
                spark, url, out_b, args.num_partitions), expected, out_b)
        if "a" not in skip:
            figures["a"] = timed("(a) flow        ", lambda: run_flow(
                hist, lake, args.master, args.num_partitions), expected,
                os.path.join(work, "a", "sensor_data"))
        if "c" not in skip:
            out_c = os.path.join(work, "c")
            figures["c"] = timed("(c) pandas      ", lambda: run_pandas(url, out_c),
                                 expected, out_c)
        if "a" in figures and "b" in figures:
            print(f"throughput (a)/(b) = {figures['b'] / figures['a']:.2f}x (goal >= 0.85)")
        if "c" in figures and "b" in figures:
            print(f"throughput (c)/(b) = {figures['b'] / figures['c']:.2f}x")
        spark.stop()
    finally:
        drop_database(url)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
