"""Tasks of the Spark extraction: thin wrappers (retries, logging) around shopfloor functions.

Per the rule in :mod:`tasks`: the historian database and the lake arrive as block names
and are resolved here (through :mod:`tasks.runtime`, which caches the engine); the
running Spark session is the one object that travels. Nothing is cached: every task
reads or writes live state.
"""

from typing import Any

from prefect import get_run_logger, task

from shopfloor.compaction.faults import pause_hook_from_env
from shopfloor.historian.partitions import discover, has_catalog, has_drivers
from shopfloor.historian.plan import MonthSlice
from shopfloor.historian.recheck import DayCheck
from shopfloor.historian.registry import historian_tag_infos
from shopfloor.historian.source import split_existing
from shopfloor.historian.tags import Tag, load_tags
from shopfloor.modbus.tag_points import ensure_tag_tables
from shopfloor.quality import write_quality
from shopfloor.spark import extract
from shopfloor.spark.extract import ExtractionJob
from shopfloor.tags.registry import register_tags
from tasks import runtime
from tasks.runtime import LIVE, RETRIED, retried


@task(name="find-month-tables", **RETRIED, **LIVE)
def find_month_tables(historian_db: str,
                      months: list[MonthSlice]) -> tuple[list[MonthSlice], list[MonthSlice]]:
    """Find the tables of each planned month: Ignition's ``sqlth_partitions`` when the
    historian has it (any span, several drivers), else the name pattern; split the months
    into those whose tables exist and those missing.

    Args:
        historian_db: SqlAlchemyConnector block of the historian database.
        months: the planned month slices.
    """
    tables = runtime.tables()
    with runtime.engine(historian_db).connect() as conn:
        planned, uncovered = discover(conn, tables, months)
        present, missing = split_existing(conn, tables, planned)
    logger = get_run_logger()
    for m in uncovered:
        logger.warning("month %s: no partition in sqlth_partitions covers it, skipped", m.month)
    for m in missing:
        logger.warning("month %s: table(s) %s do not exist, skipped", m.month, m.table)
    logger.info("%d month(s) found (%s), %d missing", len(present),
                "sqlth_partitions" if any(m.reads for m in present) else "name pattern",
                len(missing) + len(uncovered))
    return present, sorted(missing + uncovered, key=lambda m: m.start_ms)


@task(name="load-historian-tags", **RETRIED, **LIVE)
def load_historian_tags(historian_db: str, patterns: list[str],
                        registry_db: str | None = None) -> list[Tag]:
    """Tags of ``sqlth_te`` whose tagpath matches one of the SQL LIKE patterns, with their
    Ignition driver when the historian has ``sqlth_partitions`` and scan classes; with
    ``registry_db``, also registered in that database's tag registry (``tags``, device:
    the historian's block name), an idempotent upsert.

    Args:
        historian_db: SqlAlchemyConnector block of the historian database.
        patterns: SQL LIKE patterns (``%`` any characters, ``_`` one character).
        registry_db: SqlAlchemyConnector block holding the tag registry, or None.
    """
    tables = runtime.tables()
    with runtime.engine(historian_db).connect() as conn:
        drivers = has_catalog(conn, tables) and has_drivers(conn, tables)
        tags = load_tags(conn, tables, patterns, drivers=drivers)
        infos = historian_tag_infos(conn, tables, patterns, historian_db) if registry_db else []
    logger = get_run_logger()
    logger.info("%d tag(s) (%d path(s)) match %s", len(tags),
                len({t.tagpath for t in tags}), patterns)
    if infos:
        engine = runtime.engine(registry_db)
        ensure_tag_tables(engine, tables)
        with engine.begin() as conn:
            register_tags(conn, tables.tags, infos)
        logger.info("%d historian tag(s) registered in %s", len(infos), registry_db)
    return tags


@task(name="recheck-lake-days", **RETRIED, **LIVE)
def recheck_lake_days(historian_db: str, lake: str, job: ExtractionJob,
                      months: list[MonthSlice]) -> list[DayCheck]:
    """Compare rows per (tag, day) of already extracted days between the source (GROUP BY
    in the database) and the lake (Parquet footers): the days that changed since (late,
    store-and-forward rows) are rewritten by the flow.

    Args:
        historian_db: SqlAlchemyConnector block of the historian database.
        lake: S3Bucket or LocalFileSystem block of the lake.
        job: the extraction's shared values.
        months: the re-check window's month slices whose tables exist.
    """
    checks = extract.check_days(runtime.engine(historian_db), runtime.tables(),
                                runtime.storage(lake), job, months)
    logger = get_run_logger()
    for c in checks:
        if c.changed:
            logger.warning("day %s changed since extracted: %d row(s) in the source, %d in "
                           "the lake, %d tag(s) differ; rewriting it", c.date, c.source_rows,
                           c.lake_rows, c.changed_tags)
    logger.info("re-check: %d of %d day(s) changed", sum(c.changed for c in checks),
                len(checks))
    return checks


@task(name="clean-output-leftovers", task_run_name="clean-{month.month}", **RETRIED,
      **LIVE)
def clean_output_leftovers(lake: str, job: ExtractionJob, month: MonthSlice) -> None:
    """Finish a replace a crashed run left half done and drop staging a failed run left,
    before the month is written (see :mod:`shopfloor.historian.publish`).

    Args:
        lake: S3Bucket or LocalFileSystem block of the lake.
        job: the extraction's shared values.
        month: the month about to be extracted (for the task's name).
    """
    found = extract.clean_output(runtime.storage(lake), job)
    if found.rolled_forward or found.staged_removed:
        get_run_logger().warning(
            "month %s: %d interrupted replace(s) of %s finished, %d staged file(s) of "
            "failed runs removed", month.month, found.rolled_forward, job.output_prefix,
            found.staged_removed)


@task(name="write-month-parquet", task_run_name="write-{month.month}", **retried(1, 3),
      **LIVE)
def write_month_parquet(spark, historian_db: str, lake: str, job: ExtractionJob,
                        month: MonthSlice, token: str) -> str:
    """Read the month through JDBC (partitioned on t_stamp), filter, join tags, write Parquet
    to the month's staging folder (readers do not see it until it is replaced in).

    Args:
        spark: the running SparkSession.
        historian_db: SqlAlchemyConnector block of the historian database.
        lake: S3Bucket or LocalFileSystem block of the lake.
        job: the extraction's shared values.
        month: the month slice.
        token: the month's publish token (names its staging folder and files).
    """
    writer = extract.write_month(spark, runtime.engine(historian_db), runtime.tables(),
                                 runtime.storage(lake), job, month, token)
    get_run_logger().info("month %s: %s staged with the %s writer", month.month, month.table,
                          writer)
    return writer


@task(name="validate-month-output", task_run_name="validate-{month.month}",
      **LIVE)
def validate_month_output(historian_db: str, lake: str, job: ExtractionJob,
                          month: MonthSlice, token: str) -> tuple[int, int, int, int]:
    """Read the staged files back and compare their row count with the source's count
    (and, in the date layout, the other tags' rows carried over with the output's).

    Args:
        historian_db: SqlAlchemyConnector block of the historian database.
        lake: S3Bucket or LocalFileSystem block of the lake.
        job: the extraction's shared values.
        month: the month slice.
        token: the month's publish token.
    """
    expected, actual, files, carried = extract.validate_month(
        runtime.engine(historian_db), runtime.tables(), runtime.storage(lake), job, month, token)
    get_run_logger().info("month %s: %d rows in %d staged file(s), source %d; %d row(s) of "
                          "other tags carried over", month.month, actual, files, expected,
                          carried)
    return expected, actual, files, carried


@task(name="replace-month-partitions", task_run_name="replace-{month.month}",
      **LIVE)
def replace_month_partitions(lake: str, job: ExtractionJob, month: MonthSlice,
                             token: str) -> int:
    """Swap the checked staged month in for the window's old partitions of the selected
    tags, through a manifest (a crash part-way is finished by the next run).

    No retries: a failure part-way leaves the manifest, and only the roll-forward of the
    next run's clean-up may touch it. Fault injection (``SHOPFLOOR_FAULT_PAUSE_AT``,
    docs/spark_extraction.md) pauses here when set.

    Args:
        lake: S3Bucket or LocalFileSystem block of the lake.
        job: the extraction's shared values.
        month: the month slice.
        token: the month's publish token.
    """
    pause = pause_hook_from_env() or (lambda step: None)
    deleted = extract.replace_month(runtime.storage(lake), job, month, token, pause)
    get_run_logger().info("month %s: replaced, %d old file(s) deleted", month.month, deleted)
    return deleted


@task(name="discard-month-staging", task_run_name="discard-{month.month}",
      **LIVE)
def discard_month_staging(lake: str, job: ExtractionJob, month: MonthSlice,
                          token: str) -> None:
    """After a failed month: drop its staging, so the old output stays exactly as it was
    (a replace already under way is left to the next run's roll-forward).

    Args:
        lake: S3Bucket or LocalFileSystem block of the lake.
        job: the extraction's shared values.
        month: the month slice.
        token: the month's publish token.
    """
    if not extract.discard_month(runtime.storage(lake), job, token):
        get_run_logger().warning("month %s: its replace had begun; the next run finishes it",
                                 month.month)


@task(name="record-month-quality", task_run_name="quality-{month.month}",
      **LIVE)
def record_month_quality(quality_db: str | None, result: extract.MonthResult,
                         month: MonthSlice, run_id: str | None) -> dict[str, Any]:
    """Score the published month and, with ``quality_db``, store its ``quality_score``
    row there. Written right after the publish: the lake has no transaction the row
    could share, so a crash in between leaves a published month without its row (the
    next run of the month writes one).

    Args:
        quality_db: SqlAlchemyConnector block holding ``quality_score``; None: the
            scores go to the month's artifact only.
        result: the month, published.
        month: the month slice.
        run_id: the flow run's id.
    """
    row = extract.month_quality_row(result, month, run_id)
    if quality_db:
        with runtime.engine(quality_db).begin() as conn:
            write_quality(conn, runtime.tables(), [row])
    return row
