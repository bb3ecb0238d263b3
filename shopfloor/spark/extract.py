"""One month of the extraction: clear its partitions, read-shape-write, read back and count."""

from dataclasses import dataclass, field

from sqlalchemy import Engine

from shopfloor.db.schema import Tables, historian_data_table
from shopfloor.errors import ShopfloorError
from shopfloor.historian import lake
from shopfloor.historian.plan import MonthSlice
from shopfloor.historian.source import count_filtered
from shopfloor.historian.tags import Tag
from shopfloor.spark import writers
from shopfloor.spark.jdbc import JdbcSource, month_subquery
from shopfloor.spark.session import has_s3a
from shopfloor.spark.transform import read_month, shape_readings, tags_frame
from shopfloor.storage import StorageLocation


@dataclass(frozen=True)
class ExtractionJob:
    """Everything a month needs, resolved from the flow's parameters and blocks."""

    source: JdbcSource
    tables: Tables
    storage: StorageLocation
    output_prefix: str
    tags: list[Tag]
    tag_patterns: list[str]
    good_quality: list[int]
    num_partitions: int
    max_records_per_file: int

    @property
    def tag_keys(self) -> list[str]:
        return [t.key for t in self.tags]


@dataclass
class MonthResult:
    """What happened to one month (a row of the summary artifact)."""

    month: str
    table: str
    status: str = "pending"  # ok | missing | failed
    source_rows: int = 0
    written_rows: int = 0
    files: int = 0
    deleted_files: int = 0
    seconds: float = 0.0
    writer: str = ""
    error: str = field(default="")


def clear_month(job: ExtractionJob, month: MonthSlice) -> int:
    """Delete the month's ``(tag, date)`` partitions of the selected tags; files deleted."""
    return lake.delete_window(job.storage, job.output_prefix, job.tag_keys, month.dates)


def write_month(spark, engine: Engine, job: ExtractionJob, month: MonthSlice) -> str:
    """Read the month through JDBC, shape it and write it; returns the writer used."""
    table = historian_data_table(job.tables, month.table)
    raw = read_month(spark, job.source, month_subquery(table, engine.dialect), month,
                     [t.id for t in job.tags], job.good_quality, job.num_partitions)
    df = shape_readings(raw, tags_frame(spark, job.tags))
    if job.storage.kind == "local":
        writers.write_native(df, job.storage.url(job.output_prefix), job.max_records_per_file)
        return "spark"
    if has_s3a(spark):
        c = job.storage.credentials
        if c:
            writers.configure_s3a(spark, c.endpoint_url, c.key_id, c.secret, c.session_token)
        url = "s3a://" + lake.storage_path(job.storage, job.output_prefix)
        writers.write_native(df, url, job.max_records_per_file)
        return "spark-s3a"
    writers.write_arrow(df, lake.arrow_filesystem(job.storage),
                        lake.storage_path(job.storage, job.output_prefix),
                        job.max_records_per_file)
    return "arrow-s3"


def validate_month(engine: Engine, job: ExtractionJob, month: MonthSlice) -> tuple[int, int, int]:
    """``(source_rows, written_rows, files)``; a mismatch raises with both numbers."""
    with engine.connect() as conn:
        expected = count_filtered(conn, job.tables, month, job.tag_patterns, job.good_quality)
    keys = [k for k in lake.window_files(job.storage, job.output_prefix, job.tag_keys,
                                         month.dates) if lake.is_data_file(k)]
    actual = lake.count_rows(job.storage, keys)
    if actual != expected:
        raise ShopfloorError(
            f"month {month.month}: the output holds {actual} rows in {len(keys)} files "
            f"but the source has {expected} matching good rows in {month.table}"
        )
    return expected, actual, len(keys)

