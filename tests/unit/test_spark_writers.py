"""The executor-side Parquet writer, run here on plain Arrow batches, and the choice of
writer per storage location (no Spark started)."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow import fs

from shopfloor.spark import extract, writers
from shopfloor.spark.writers import _PartitionFiles, _runs
from shopfloor.storage import S3Credentials, StorageLocation
from shopfloor.storage_engines import spark_s3a_settings


def _batch(rows: list[tuple[str, str, int]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(
        [{"tagid": v, "value": float(v), "tag": t, "date": d} for t, d, v in rows])


def test_sorted_batches_become_capped_files_with_deterministic_names(tmp_path):
    rows = [("a", "2026-01-01", i) for i in range(5)] + [("a", "2026-01-02", 9),
                                                        ("b", "2026-01-01", 7)]
    files = _PartitionFiles(fs.LocalFileSystem(), str(tmp_path), pid=3, max_rows=2)
    # a group continues from one batch into the next
    for batch in (_batch(rows[:3]), _batch(rows[3:])):
        for key, table in _runs(batch):
            files.add(key, table)
    files.close()
    written = {p.removeprefix(str(tmp_path) + "/"): n for p, n in files.written}
    assert written == {
        "tag=a/date=2026-01-01/part-00003-0000.parquet": 2,
        "tag=a/date=2026-01-01/part-00003-0001.parquet": 2,
        "tag=a/date=2026-01-01/part-00003-0002.parquet": 1,
        "tag=a/date=2026-01-02/part-00003-0000.parquet": 1,
        "tag=b/date=2026-01-01/part-00003-0000.parquet": 1,
    }
    table = pq.read_table(tmp_path / "tag=a/date=2026-01-01/part-00003-0002.parquet")
    assert table.column_names == ["tagid", "value"]  # partition values live in the path
    assert table.column("tagid").to_pylist() == [4]


def test_the_date_layout_keeps_tag_as_a_column_in_whole_row_groups(tmp_path):
    rows = [("a", "2026-01-01", i) for i in range(5)] + [("b", "2026-01-01", 7),
                                                        ("a", "2026-01-02", 9)]
    columns = writers.PARTITION_COLUMNS["date"]
    files = _PartitionFiles(fs.LocalFileSystem(), str(tmp_path), pid=0, max_rows=5,
                            columns=columns, row_group_rows=2)
    for batch in (_batch(rows[:1]), _batch(rows[1:4]), _batch(rows[4:])):
        for key, table in _runs(batch, columns):
            files.add(key, table)
    files.close()
    written = {p.removeprefix(str(tmp_path) + "/"): n for p, n in files.written}
    assert written == {"date=2026-01-01/part-00000-0000.parquet": 5,  # capped at 5 rows
                       "date=2026-01-01/part-00000-0001.parquet": 1,
                       "date=2026-01-02/part-00000-0000.parquet": 1}
    first = pq.ParquetFile(tmp_path / "date=2026-01-01/part-00000-0000.parquet")
    assert first.schema_arrow.names == ["tagid", "value", "tag"]
    assert [first.metadata.row_group(i).num_rows for i in range(3)] == [2, 2, 1]
    assert first.read().column("tag").to_pylist() == ["a"] * 5
    assert pq.read_table(tmp_path / "date=2026-01-01/part-00000-0001.parquet").to_pylist() == [
        {"tagid": 7, "value": 7.0, "tag": "b"}]


class _HadoopConf:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def set(self, key: str, value: str) -> None:
        self.values[key] = value


class _FakeSpark:
    """Just enough of a SparkSession for the writer choice: a Hadoop configuration."""

    def __init__(self) -> None:
        self.hadoop = _HadoopConf()
        jsc = type("Jsc", (), {"hadoopConfiguration": lambda _self: self.hadoop})()
        self.sparkContext = type("Ctx", (), {"_jsc": jsc})()


S3 = StorageLocation("s3", "bucket", "lake", S3Credentials(
    key_id="AKIA", secret="s3cr3t", endpoint_url="http://127.0.0.1:9000"))


@pytest.fixture
def calls(monkeypatch) -> list[tuple]:
    out: list[tuple] = []
    monkeypatch.setattr(writers, "write_native",
                        lambda df, url, n, layout: out.append(("native", url, layout)))
    monkeypatch.setattr(writers, "write_arrow", lambda df, fs, base, n, layout: out.append(
        ("arrow", type(fs).__name__, base, layout)))
    return out


def test_a_local_folder_gets_sparks_own_writer_and_no_s3_settings(tmp_path, calls, monkeypatch):
    monkeypatch.setattr(extract, "has_s3a", pytest.fail)  # not even asked
    spark = _FakeSpark()
    local = StorageLocation("local", str(tmp_path))
    assert extract.write_frame(spark, None, local, "out", 10) == "spark"
    assert extract.write_frame(spark, None, local, "out", 10, "date") == "spark"
    assert calls == [("native", str(tmp_path / "out"), "tag"),
                     ("native", str(tmp_path / "out"), "date")]
    assert spark.hadoop.values == {}


def test_s3_with_hadoop_aws_writes_s3a_with_the_locations_settings(calls, monkeypatch):
    monkeypatch.setattr(extract, "has_s3a", lambda spark: True)
    spark = _FakeSpark()
    assert extract.write_frame(spark, None, S3, "out", 10, "date") == "spark-s3a"
    assert calls == [("native", "s3a://bucket/lake/out", "date")]
    assert spark.hadoop.values == spark_s3a_settings(S3)
    assert spark.hadoop.values["fs.s3a.secret.key"] == "s3cr3t"


def test_s3_without_hadoop_aws_writes_from_the_executors_with_pyarrow(calls, monkeypatch):
    monkeypatch.setattr(extract, "has_s3a", lambda spark: False)
    spark = _FakeSpark()
    assert extract.write_frame(spark, None, S3, "out", 10, "date") == "arrow-s3"
    assert calls == [("arrow", "S3FileSystem", "bucket/lake/out", "date")]
    assert spark.hadoop.values == {}
