"""Write the shaped readings as Hive-partitioned Parquet in one of two layouts.

- ``date``: ``date=<YYYY-MM-DD>/``, ``tag`` a column, rows sorted by ``(tag, ts)`` in row
  groups small enough that a one-tag reader skips most of a day's file;
- ``tag``: ``tag=<key>/date=<YYYY-MM-DD>/`` (the seed's).

- :func:`write_native`: Spark's own writer, for local paths and ``s3a://`` (hadoop-aws).
- :func:`write_arrow`: each executor writes its partition's files with a pyarrow
  filesystem inside ``mapInArrow``: S3 with no hadoop-aws jars, in parallel, on a
  cluster too. File names are deterministic (Spark partition id and a sequence), so
  a retried Spark task overwrites its own files instead of adding copies.

Either way a day's rows are written by the task that read them (the JDBC ranges are cut
at UTC midnights), so a day gets one file per ``max_records_per_file`` rows, not one per
task. This module is pickled by value, so executors need pyarrow but not this package
(hence no import from it).
"""

import sys
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark import cloudpickle
from pyspark.sql import DataFrame

PARTITION_COLUMNS = {"tag": ("tag", "date"), "date": ("date",)}
SORT_COLUMNS = {"tag": ("tag", "date", "ts"), "date": ("date", "tag", "ts")}
# Row groups of the date layout: rows (arrow writer) and the bytes Spark's writer buffers
# per group (parquet.block.size; ~3,500 rows on the benchmark's data, benchmarks/README.md).
ROW_GROUP_ROWS = 10_000
ROW_GROUP_BYTES = 256 * 1024
RESULT_SCHEMA = pa.schema([("path", pa.string()), ("rows", pa.int64())])
RESULT_DDL = "path STRING, rows BIGINT"

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def write_native(df: DataFrame, path: str, max_records_per_file: int,
                 layout: str = "tag") -> None:
    """Append the partitions with Spark's writer (into a fresh staging folder)."""
    writer = (
        df.sortWithinPartitions(*SORT_COLUMNS[layout])
        .write.mode("append")
        .partitionBy(*PARTITION_COLUMNS[layout])
        .option("maxRecordsPerFile", max_records_per_file)
    )
    if layout == "date":
        writer = writer.option("parquet.block.size", ROW_GROUP_BYTES)
    writer.parquet(path)


class _PartitionFiles:
    """Streams sorted rows into ``<partition folders>/part-<pid>-<seq>.parquet`` files of
    at most ``max_rows`` rows each, in row groups of ``row_group_rows``."""

    def __init__(self, fs: Any, base: str, pid: int, max_rows: int,
                 columns: tuple[str, ...] = PARTITION_COLUMNS["tag"],
                 row_group_rows: int = ROW_GROUP_ROWS) -> None:
        self.fs, self.base, self.pid, self.max_rows = fs, base.rstrip("/"), pid, max_rows
        self.columns, self.row_group_rows = columns, row_group_rows
        self.key: tuple[str, ...] | None = None
        self.writer: pq.ParquetWriter | None = None
        self.sink: Any = None
        self.path, self.rows, self.seq = "", 0, 0
        self.pending: list[pa.Table] = []
        self.written: list[tuple[str, int]] = []

    def add(self, key: tuple[str, ...], table: pa.Table) -> None:
        offset = 0
        while offset < table.num_rows:
            if key != self.key or self.rows >= self.max_rows:
                self._open(key, table.schema)
            n = min(self.max_rows - self.rows, table.num_rows - offset)
            self.pending.append(table.slice(offset, n))
            self.rows += n
            offset += n
            self._flush(whole_groups_only=True)

    def _flush(self, whole_groups_only: bool = False) -> None:
        """Write the buffered rows as row groups of ``row_group_rows`` (the last one may be
        short when the file closes)."""
        buffered = sum(t.num_rows for t in self.pending)
        n = buffered - buffered % self.row_group_rows if whole_groups_only else buffered
        if not n:
            return
        table = pa.concat_tables(self.pending)
        self.writer.write_table(table.slice(0, n), row_group_size=self.row_group_rows)
        rest = table.slice(n)
        self.pending = [rest] if rest.num_rows else []

    def _open(self, key: tuple[str, ...], schema: pa.Schema) -> None:
        self.close()
        self.seq = self.seq + 1 if key == self.key else 0
        self.key = key
        folders = "/".join(f"{c}={v}" for c, v in zip(self.columns, key, strict=True))
        self.path = f"{self.base}/{folders}/part-{self.pid:05d}-{self.seq:04d}.parquet"
        if self.fs.type_name == "local":  # S3 has no folders; a marker object would be noise
            self.fs.create_dir(self.path.rsplit("/", 1)[0], recursive=True)
        self.sink = self.fs.open_output_stream(self.path)
        self.writer = pq.ParquetWriter(self.sink, schema, compression="snappy")
        self.rows = 0

    def close(self) -> None:
        if self.writer is not None:
            self._flush()
            self.writer.close()
            self.sink.close()  # the writer leaves a stream it was given open; S3 uploads on close
            self.written.append((self.path, self.rows))
            self.writer = None


def _runs(batch: pa.RecordBatch, columns: tuple[str, ...] = PARTITION_COLUMNS["tag"]
          ) -> Iterator[tuple[tuple[str, ...], pa.Table]]:
    """Consecutive rows with the same partition values, without the partition columns."""
    values = [batch.column(c).to_pylist() for c in columns]
    keys = list(zip(*values, strict=True))
    data = pa.Table.from_batches([batch]).drop_columns(list(columns))
    start = 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            yield keys[start], data.slice(start, i - start)
            start = i


def _writer_fn(fs: Any, base: str, max_rows: int, columns: tuple[str, ...]):
    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        files = _PartitionFiles(fs, base, TaskContext.get().partitionId(), max_rows, columns)
        try:
            for batch in batches:
                for key, table in _runs(batch, columns):
                    files.add(key, table)
        finally:
            files.close()
        yield pa.RecordBatch.from_pylist(
            [{"path": p, "rows": r} for p, r in files.written], schema=RESULT_SCHEMA)
    return write


def write_arrow(df: DataFrame, fs: Any, base: str, max_records_per_file: int,
                layout: str = "tag") -> list[tuple[str, int]]:
    """Write from the executors through pyarrow filesystem ``fs`` under ``base``
    (``bucket/prefix`` for S3); returns ``(path, rows)`` of every file written."""
    out = df.sortWithinPartitions(*SORT_COLUMNS[layout]).mapInArrow(
        _writer_fn(fs, base, max_records_per_file, PARTITION_COLUMNS[layout]), RESULT_DDL)
    return [(r.path, int(r.rows)) for r in out.collect()]


def configure_s3a(spark: Any, settings: Mapping[str, str]) -> None:
    """Apply Hadoop ``fs.s3a.*`` settings (from ``storage_engines.spark_s3a_settings``) to
    the running session's Hadoop configuration: runtime only, and never logged."""
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    for key, value in settings.items():
        conf.set(key, value)
