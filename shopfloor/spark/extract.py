"""One month of the extraction: stage it, read it back and count, then replace the window.

The month is written to a staging folder readers do not look at, checked there, and
swapped in for the window's old partitions through a manifest
(:mod:`shopfloor.historian.publish`): a month that fails leaves the old output as it was.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import reduce
from typing import Any

from pyspark.sql import DataFrame
from sqlalchemy import Engine

from shopfloor.db.schema import Tables, historian_data_table
from shopfloor.errors import ShopfloorError
from shopfloor.historian import lake, publish
from shopfloor.historian.plan import MonthSlice
from shopfloor.historian.recheck import DayCheck, compare_days
from shopfloor.historian.source import count_by_tag_day, count_filtered
from shopfloor.historian.tags import Tag, tags_of_driver
from shopfloor.quality import BatchCounts, Subject, artifact_scores, quality_row
from shopfloor.spark import writers
from shopfloor.spark.jdbc import jdbc_source, month_subquery
from shopfloor.spark.session import has_s3a
from shopfloor.spark.transform import read_month, shape_readings, tags_frame
from shopfloor.storage import StorageLocation
from shopfloor.storage_engines import spark_s3a_settings


@dataclass(frozen=True)
class ExtractionJob:
    """The plain values every month of one run shares.

    No connection and no credential: the database and the lake are resolved from their
    blocks where they are used, so the job travels into tasks as it is.
    """

    output_prefix: str
    tags: list[Tag]
    tag_patterns: list[str]
    good_quality: list[int]
    num_partitions: int
    max_records_per_file: int  # rows per file: from the target size, capped by the parameter
    drivers: bool = False  # tags carry their Ignition driver: a table's reads use its own
    layout: str = lake.TAG  # ``tag=/date=`` folders, or ``date=`` files (historian.lake)

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
    carried_rows: int = 0  # date layout: other tags' rows of the replaced days, kept
    files: int = 0
    deleted_files: int = 0
    seconds: float = 0.0
    writer: str = ""
    error: str = field(default="")
    kind: str = "window"  # window: the run's own dates | recheck: a day rewritten late
    # Scores of the slice's quality_score row (``q_overall`` ...), once published.
    q_completeness: float | None = None
    q_validity: float | None = None
    q_uniqueness: float | None = None
    q_timeliness: float | None = None
    q_overall: float | None = None


QUALITY_FLOW = "spark-sensor-extraction"


def month_quality_row(result: MonthResult, month: MonthSlice, run_id: str | None
                      ) -> dict[str, Any]:
    """The published month's (or re-checked day's) ``quality_score`` row: the source's
    good readings of the selected tags are what was expected, the rows read back from
    the staged Parquet what arrived (completeness: written / source; a slice is only
    published when they match, so a published one scores 1 unless that check changes)."""
    counts = BatchCounts(rows_in=result.written_rows,
                         rows_valid=min(result.written_rows, result.source_rows),
                         expected=result.source_rows)
    start = datetime.fromtimestamp(month.start_ms / 1000, UTC)
    end = datetime.fromtimestamp(month.end_ms / 1000, UTC)
    return quality_row(Subject(QUALITY_FLOW, f"{month.month} {month.table}", start, end),
                       counts, run_id)


def apply_quality(result: MonthResult, row: dict[str, Any]) -> None:
    """Copy a quality row's scores onto the month's artifact row."""
    for key, value in artifact_scores(row).items():
        setattr(result, key, value)


def clean_output(storage: StorageLocation, job: ExtractionJob) -> publish.Cleanup:
    """Finish a replace a crashed run left half done, drop staging a failed run left."""
    return publish.clean_leftovers(storage, job.output_prefix)


def month_layout(storage: StorageLocation, job: ExtractionJob, token: str
                 ) -> publish.PublishLayout:
    """Where the month publishing under ``token`` stages, and its manifest."""
    return publish.PublishLayout(storage, job.output_prefix, token, job.layout)


def write_month(spark, engine: Engine, tables: Tables, storage: StorageLocation,
                job: ExtractionJob, month: MonthSlice, token: str) -> str:
    """Read the month through JDBC, shape it and write it to the staging folder of
    ``token``; returns the writer used (``none`` when no table holds a selected tag).

    Every table of the slice (one from the name pattern, or the partitions of
    ``sqlth_partitions``) is read for the tags of its driver; the reads are unioned. JDBC
    reads the engine's database with the engine's credentials; the engine itself only
    gives the SQL dialect of the subquery.
    """
    staging = month_layout(storage, job, token).staging_key
    storage.remove_tree(staging)  # a retried write starts from nothing, never adds copies
    carry_month(storage, job, month, staging)
    source = jdbc_source(engine.url)
    frames = []
    for read in month.table_reads:
        tags = tags_of_driver(job.tags, read.drvid if job.drivers else None)
        if not tags:
            continue  # a table of a driver none of the selected tags belongs to
        table = historian_data_table(tables, read.table)
        raw = read_month(spark, source, month_subquery(table, engine.dialect), read,
                         [t.id for t in tags], job.good_quality, job.num_partitions)
        frames.append(shape_readings(raw, tags_frame(spark, tags)))
    if not frames:
        return "none"
    return write_frame(spark, reduce(DataFrame.unionByName, frames), storage, staging,
                       job.max_records_per_file, job.layout)


def carried_sources(storage: StorageLocation, job: ExtractionJob,
                    dates: list[str]) -> dict[str, int]:
    """Date layout: ``key -> rows`` of the visible output files of ``dates`` that hold rows
    of tags this run does not select (their rows must survive the replace). Also refuses
    an output prefix of the other layout before any work is done."""
    keys = lake.window_files(storage, job.output_prefix, job.layout, job.tag_keys, dates)
    if job.layout != lake.DATE:
        return {}
    return lake.other_tag_rows(storage, lake.visible_files(storage, keys), job.tag_keys)


def carry_month(storage: StorageLocation, job: ExtractionJob, month: MonthSlice,
                staging: str) -> int:
    """Copy the other tags' rows of the month's days into the staging (date layout); a
    run of every tag finds none and copies nothing."""
    sources = carried_sources(storage, job, month.dates)
    if not sources:
        return 0
    return lake.carry_other_tags(storage, sorted(sources), staging, job.tag_keys)


def write_frame(spark, df, storage: StorageLocation, prefix: str,
                max_records_per_file: int, layout: str = lake.TAG) -> str:
    """Write ``df`` under ``prefix``; returns the writer: ``spark`` (Spark's own writer on
    a local folder), ``spark-s3a`` (the same on ``s3a://`` when hadoop-aws is on the
    classpath) or ``arrow-s3`` (pyarrow from the executors, no jars needed)."""
    if not storage.is_remote:
        writers.write_native(df, storage.hadoop_url(prefix), max_records_per_file, layout)
        return "spark"
    if has_s3a(spark):
        writers.configure_s3a(spark, spark_s3a_settings(storage))
        writers.write_native(df, storage.hadoop_url(prefix), max_records_per_file, layout)
        return "spark-s3a"
    writers.write_arrow(df, storage.arrow_filesystem(), storage.path(prefix),
                        max_records_per_file, layout)
    return "arrow-s3"


def validate_month(engine: Engine, tables: Tables, storage: StorageLocation,
                   job: ExtractionJob, month: MonthSlice, token: str
                   ) -> tuple[int, int, int, int]:
    """``(source_rows, staged_rows, staged_files, carried_rows)`` of the month staged
    under ``token``; a mismatch raises with the numbers.

    The staged rows of the selected tags must equal the source's count; in the date
    layout the staged copies of other tags' rows must equal those rows in the output the
    replace will delete (counted again here, from the output itself).
    """
    with engine.connect() as conn:
        expected = count_filtered(conn, tables, month, job.tag_patterns, job.good_quality,
                                  job.drivers)
    keys = publish.staged_files(month_layout(storage, job, token), job.tag_keys, month.dates)
    carried = [k for k in keys if k.rsplit("/", 1)[-1].startswith(lake.CARRY_NAME)]
    actual = lake.count_rows(storage, sorted(set(keys) - set(carried)))
    if actual != expected:
        raise ShopfloorError(
            f"month {month.month}: the staged output holds {actual} rows in {len(keys)} files "
            f"but the source has {expected} matching good rows in {month.table}"
        )
    others = (sum(carried_sources(storage, job, month.dates).values())
              if job.layout == lake.DATE else 0)
    copied = lake.count_rows(storage, carried)
    if copied != others:
        raise ShopfloorError(
            f"month {month.month}: {copied} rows of other tags staged, but the output "
            f"being replaced holds {others}")
    return expected, actual, len(keys), copied


def replace_month(storage: StorageLocation, job: ExtractionJob, month: MonthSlice,
                  token: str, pause: Callable[[str], None] = lambda step: None) -> int:
    """Swap the checked staged month in for the window's old partitions (tag layout: of the
    selected tags; date layout: whole days, other tags' rows carried in the staging);
    returns how many old Parquet files were deleted.

    ``pause`` is the fault-injection hook (:mod:`shopfloor.compaction.faults`): called
    with ``after_stage`` before anything is replaced, ``mid_publish`` after the first
    file moved, ``after_publish`` after the last, ``after_commit`` once committed.
    """
    layout = month_layout(storage, job, token)
    pause("after_stage")
    manifest = publish.plan_replace(layout, publish.staged_files(
        layout, job.tag_keys, month.dates), job.tag_keys, month.dates)
    return publish.replace(layout, manifest, lambda: pause("mid_publish"), pause)


def discard_month(storage: StorageLocation, job: ExtractionJob, token: str) -> bool:
    """After a failed month: drop its staging (unless its replace had begun)."""
    return publish.discard(month_layout(storage, job, token))


def check_days(engine: Engine, tables: Tables, storage: StorageLocation, job: ExtractionJob,
               slices: list[MonthSlice]) -> list[DayCheck]:
    """Rows per ``(tag, day)`` of the slices' days in the source (GROUP BY in the database)
    and in the lake (Parquet footers), compared day by day."""
    source: dict[tuple[str, int], int] = {}
    with engine.connect() as conn:
        for s in slices:
            counts = count_by_tag_day(conn, tables, s, job.tag_patterns, job.good_quality,
                                      job.drivers)
            for key, n in counts.items():
                source[key] = source.get(key, 0) + n
    dates = [d for s in slices for d in s.dates]
    in_lake = lake.rows_by_partition(storage, job.output_prefix, job.layout, job.tag_keys,
                                     dates)
    return compare_days(dates, source, in_lake)
