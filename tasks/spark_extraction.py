"""Tasks of the Spark extraction: thin wrappers (retries, logging) around shopfloor functions.

Per the rule in :mod:`tasks`: the historian database and the lake arrive as block names
and are resolved here (the engine is cached per URL); the running Spark session is the
one object that travels. Nothing is cached: every task reads or writes live state.
"""

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from blocks.resolve import load_engine, load_storage
from shopfloor.db.schema import configured_tables
from shopfloor.historian.plan import MonthSlice
from shopfloor.historian.source import split_existing
from shopfloor.historian.tags import Tag, load_tags
from shopfloor.spark import extract
from shopfloor.spark.extract import ExtractionJob


@task(name="find-month-tables", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def find_month_tables(historian_db: str,
                      months: list[MonthSlice]) -> tuple[list[MonthSlice], list[MonthSlice]]:
    """Split the planned months into those whose table exists and those missing.

    Args:
        historian_db: SqlAlchemyConnector block of the historian database.
        months: the planned month slices.
    """
    with load_engine(historian_db).connect() as conn:
        present, missing = split_existing(conn, configured_tables(), months)
    logger = get_run_logger()
    for m in missing:
        logger.warning("month %s: table %s does not exist, skipped", m.month, m.table)
    logger.info("%d month table(s) found, %d missing", len(present), len(missing))
    return present, missing


@task(name="load-historian-tags", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def load_historian_tags(historian_db: str, patterns: list[str]) -> list[Tag]:
    """Tags of ``sqlth_te`` whose tagpath matches one of the SQL LIKE patterns.

    Args:
        historian_db: SqlAlchemyConnector block of the historian database.
        patterns: SQL LIKE patterns (``%`` any characters, ``_`` one character).
    """
    with load_engine(historian_db).connect() as conn:
        tags = load_tags(conn, configured_tables(), patterns)
    get_run_logger().info("%d tag(s) match %s", len(tags), patterns)
    return tags


@task(name="clear-month-partitions", task_run_name="clear-{month.month}", retries=2,
      retry_delay_seconds=5, cache_policy=NO_CACHE)
def clear_month_partitions(lake: str, job: ExtractionJob, month: MonthSlice) -> int:
    """Delete the month's date partitions of the selected tags (the rerun replaces them).

    Args:
        lake: S3Bucket or LocalFileSystem block of the lake.
        job: the extraction's shared values.
        month: the month slice.
    """
    deleted = extract.clear_month(load_storage(lake), job, month)
    get_run_logger().info("month %s: %d old file(s) deleted", month.month, deleted)
    return deleted


@task(name="write-month-parquet", task_run_name="write-{month.month}", retries=1,
      retry_delay_seconds=3, cache_policy=NO_CACHE)
def write_month_parquet(spark, historian_db: str, lake: str, job: ExtractionJob,
                        month: MonthSlice) -> str:
    """Read the month through JDBC (partitioned on t_stamp), filter, join tags, write Parquet.

    Args:
        spark: the running SparkSession.
        historian_db: SqlAlchemyConnector block of the historian database.
        lake: S3Bucket or LocalFileSystem block of the lake.
        job: the extraction's shared values.
        month: the month slice.
    """
    writer = extract.write_month(spark, load_engine(historian_db), configured_tables(),
                                 load_storage(lake), job, month)
    get_run_logger().info("month %s: %s written with the %s writer", month.month, month.table,
                          writer)
    return writer


@task(name="validate-month-output", task_run_name="validate-{month.month}",
      cache_policy=NO_CACHE)
def validate_month_output(historian_db: str, lake: str, job: ExtractionJob,
                          month: MonthSlice) -> tuple[int, int, int]:
    """Read the written files back and compare their row count with the source's count.

    Args:
        historian_db: SqlAlchemyConnector block of the historian database.
        lake: S3Bucket or LocalFileSystem block of the lake.
        job: the extraction's shared values.
        month: the month slice.
    """
    expected, actual, files = extract.validate_month(
        load_engine(historian_db), configured_tables(), load_storage(lake), job, month)
    get_run_logger().info("month %s: %d rows in %d file(s), source %d", month.month, actual,
                          files, expected)
    return expected, actual, files
