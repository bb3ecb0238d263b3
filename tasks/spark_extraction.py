"""Tasks of the Spark extraction: thin wrappers (retries, logging) around shopfloor functions.

Their arguments (engines, a SparkSession) cannot be hashed, so nothing is cached.
"""

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine

from shopfloor.db.schema import Tables
from shopfloor.historian.plan import MonthSlice
from shopfloor.historian.source import split_existing
from shopfloor.historian.tags import Tag, load_tags
from shopfloor.spark import extract
from shopfloor.spark.extract import ExtractionJob


@task(name="find-month-tables", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def find_month_tables(engine: Engine, tables: Tables,
                      months: list[MonthSlice]) -> tuple[list[MonthSlice], list[MonthSlice]]:
    """Split the planned months into those whose table exists and those missing.

    Args:
        engine: the historian database.
        tables: table metadata (schema-aware).
        months: the planned month slices.
    """
    present, missing = _split(engine, tables, months)
    logger = get_run_logger()
    for m in missing:
        logger.warning("month %s: table %s does not exist, skipped", m.month, m.table)
    logger.info("%d month table(s) found, %d missing", len(present), len(missing))
    return present, missing


def _split(engine: Engine, tables: Tables, months: list[MonthSlice]):
    with engine.connect() as conn:
        return split_existing(conn, tables, months)


@task(name="load-historian-tags", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def load_historian_tags(engine: Engine, tables: Tables, patterns: list[str]) -> list[Tag]:
    """Tags of ``sqlth_te`` whose tagpath matches one of the SQL LIKE patterns.

    Args:
        engine: the historian database.
        tables: table metadata (schema-aware).
        patterns: SQL LIKE patterns (``%`` any characters, ``_`` one character).
    """
    with engine.connect() as conn:
        tags = load_tags(conn, tables, patterns)
    get_run_logger().info("%d tag(s) match %s", len(tags), patterns)
    return tags


@task(name="clear-month-partitions", task_run_name="clear-{month.month}", retries=2,
      retry_delay_seconds=5, cache_policy=NO_CACHE)
def clear_month_partitions(job: ExtractionJob, month: MonthSlice) -> int:
    """Delete the month's date partitions of the selected tags (the rerun replaces them).

    Args:
        job: the resolved extraction.
        month: the month slice.
    """
    deleted = extract.clear_month(job, month)
    get_run_logger().info("month %s: %d old file(s) deleted", month.month, deleted)
    return deleted


@task(name="write-month-parquet", task_run_name="write-{month.month}", retries=1,
      retry_delay_seconds=3, cache_policy=NO_CACHE)
def write_month_parquet(spark, engine: Engine, job: ExtractionJob, month: MonthSlice) -> str:
    """Read the month through JDBC (partitioned on t_stamp), filter, join tags, write Parquet.

    Args:
        spark: the SparkSession.
        engine: the historian database (for its SQL dialect).
        job: the resolved extraction.
        month: the month slice.
    """
    writer = extract.write_month(spark, engine, job, month)
    get_run_logger().info("month %s: %s written with the %s writer", month.month, month.table,
                          writer)
    return writer


@task(name="validate-month-output", task_run_name="validate-{month.month}",
      cache_policy=NO_CACHE)
def validate_month_output(engine: Engine, job: ExtractionJob,
                          month: MonthSlice) -> tuple[int, int, int]:
    """Read the written files back and compare their row count with the source's count.

    Args:
        engine: the historian database.
        job: the resolved extraction.
        month: the month slice.
    """
    expected, actual, files = extract.validate_month(engine, job, month)
    get_run_logger().info("month %s: %d rows in %d file(s), source %d", month.month, actual,
                          files, expected)
    return expected, actual, files
