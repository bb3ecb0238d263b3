"""Write the shaped readings as Hive-partitioned Parquet: ``tag=<key>/date=<YYYY-MM-DD>/``.

- :func:`write_native`: Spark's own writer, for local paths and ``s3a://`` (hadoop-aws).
- :func:`write_arrow`: each executor writes its partition's files with a pyarrow
  filesystem inside ``mapInArrow``: S3 with no hadoop-aws jars, in parallel, on a
  cluster too. File names are deterministic (Spark partition id and a sequence), so
  a retried Spark task overwrites its own files instead of adding copies.

This module is pickled by value, so executors need pyarrow but not this package.
"""

import sys
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark import cloudpickle
from pyspark.sql import DataFrame

PARTITION_COLUMNS = ("tag", "date")
SORT_COLUMNS = ("tag", "date", "ts")
RESULT_SCHEMA = pa.schema([("path", pa.string()), ("rows", pa.int64())])
RESULT_DDL = "path STRING, rows BIGINT"

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def write_native(df: DataFrame, path: str, max_records_per_file: int) -> None:
    """Append the partitions with Spark's writer (into a fresh staging folder)."""
    (
        df.sortWithinPartitions(*SORT_COLUMNS)
        .write.mode("append")
        .partitionBy(*PARTITION_COLUMNS)
        .option("maxRecordsPerFile", max_records_per_file)
        .parquet(path)
    )


class _PartitionFiles:
    """Streams sorted rows into ``tag=/date=/part-<pid>-<seq>.parquet`` files of at most
    ``max_rows`` rows each."""

    def __init__(self, fs: Any, base: str, pid: int, max_rows: int) -> None:
        self.fs, self.base, self.pid, self.max_rows = fs, base.rstrip("/"), pid, max_rows
        self.key: tuple[str, str] | None = None
        self.writer: pq.ParquetWriter | None = None
        self.path, self.rows, self.seq = "", 0, 0
        self.written: list[tuple[str, int]] = []

    def add(self, key: tuple[str, str], table: pa.Table) -> None:
        offset = 0
        while offset < table.num_rows:
            if key != self.key or self.rows >= self.max_rows:
                self._open(key, table.schema)
            n = min(self.max_rows - self.rows, table.num_rows - offset)
            self.writer.write_table(table.slice(offset, n))
            self.rows += n
            offset += n

    def _open(self, key: tuple[str, str], schema: pa.Schema) -> None:
        self.close()
        self.seq = self.seq + 1 if key == self.key else 0
        self.key = key
        self.path = (f"{self.base}/tag={key[0]}/date={key[1]}/"
                     f"part-{self.pid:05d}-{self.seq:04d}.parquet")
        if self.fs.type_name == "local":  # S3 has no folders; a marker object would be noise
            self.fs.create_dir(self.path.rsplit("/", 1)[0], recursive=True)
        self.writer = pq.ParquetWriter(self.fs.open_output_stream(self.path), schema,
                                       compression="snappy")
        self.rows = 0

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.written.append((self.path, self.rows))
            self.writer = None


def _runs(batch: pa.RecordBatch) -> Iterator[tuple[tuple[str, str], pa.Table]]:
    """Consecutive rows with the same ``(tag, date)``, without the partition columns."""
    tags = batch.column("tag").to_pylist()
    dates = batch.column("date").to_pylist()
    data = pa.Table.from_batches([batch]).drop_columns(list(PARTITION_COLUMNS))
    start = 0
    for i in range(1, len(tags) + 1):
        if i == len(tags) or tags[i] != tags[start] or dates[i] != dates[start]:
            yield (tags[start], dates[start]), data.slice(start, i - start)
            start = i


def _writer_fn(fs: Any, base: str, max_rows: int):
    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        files = _PartitionFiles(fs, base, TaskContext.get().partitionId(), max_rows)
        try:
            for batch in batches:
                for key, table in _runs(batch):
                    files.add(key, table)
        finally:
            files.close()
        yield pa.RecordBatch.from_pylist(
            [{"path": p, "rows": r} for p, r in files.written], schema=RESULT_SCHEMA)
    return write


def write_arrow(df: DataFrame, fs: Any, base: str,
                max_records_per_file: int) -> list[tuple[str, int]]:
    """Write from the executors through pyarrow filesystem ``fs`` under ``base``
    (``bucket/prefix`` for S3); returns ``(path, rows)`` of every file written."""
    out = df.sortWithinPartitions(*SORT_COLUMNS).mapInArrow(
        _writer_fn(fs, base, max_records_per_file), RESULT_DDL)
    return [(r.path, int(r.rows)) for r in out.collect()]


def configure_s3a(spark: Any, settings: Mapping[str, str]) -> None:
    """Apply Hadoop ``fs.s3a.*`` settings (from ``storage_engines.spark_s3a_settings``) to
    the running session's Hadoop configuration: runtime only, and never logged."""
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    for key, value in settings.items():
        conf.set(key, value)
