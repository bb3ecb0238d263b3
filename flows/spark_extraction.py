"""``spark-sensor-extraction``: monthly historian tables -> partitioned Parquet in the lake.

Runs month by month (a backfill of a long range is one call); a failed month is reported
and does not undo the finished ones. Each month is staged, checked and only then swapped
in for the old output, so a failed month leaves its previous output as it was.
"""

import time

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from shopfloor.db.engine import check_connection
from shopfloor.errors import ShopfloorError
from shopfloor.historian.plan import (
    Layout,
    MonthSlice,
    OutputPrefix,
    PositiveInt,
    QualityCodes,
    RecheckDays,
    SparkMaster,
    TablePattern,
    TagPatterns,
    TargetFileMb,
    check_parameters,
    plan_months,
    resolve_window,
)
from shopfloor.historian.publish import new_token
from shopfloor.historian.recheck import DayCheck, day_slices, recheck_window
from shopfloor.params import IsoDate
from shopfloor.spark.errors import error_line
from shopfloor.spark.extract import ExtractionJob, MonthResult, apply_quality
from shopfloor.spark.jdbc import jdbc_source
from shopfloor.spark.run import (
    counts_line,
    make_job,
    ordered,
    recheck_description,
    recheck_rows,
    verdict,
    work_list,
)
from shopfloor.spark.session import session_conf, spark_session
from tasks import runtime
from tasks.outcomes import ON_FAILURE, conclude
from tasks.runtime import logical_now, run_id
from tasks.spark_extraction import (
    clean_output_leftovers,
    discard_month_staging,
    find_month_tables,
    load_historian_tags,
    recheck_lake_days,
    record_month_quality,
    replace_month_partitions,
    validate_month_output,
    write_month_parquet,
)

ARTIFACT_PREFIX = "spark-extraction"


def _month_artifact(result: MonthResult) -> None:
    create_table_artifact(
        key=f"{ARTIFACT_PREFIX}-{result.month}",
        table=[vars(result)],
        description=f"Spark extraction of {result.table}: {result.status}",
    )


def _extract_month(spark, historian_db: str, lake: str, job: ExtractionJob,
                   month: MonthSlice, kind: str = "window",
                   quality_db: str | None = None) -> MonthResult:
    logger = get_run_logger()
    result = MonthResult(month.month, month.table, kind=kind)
    token = new_token(run_id())
    started = time.perf_counter()
    try:
        clean_output_leftovers(lake, job, month)
        result.writer = write_month_parquet(spark, historian_db, lake, job, month, token)
        (result.source_rows, result.written_rows, result.files,
         result.carried_rows) = validate_month_output(historian_db, lake, job, month, token)
        result.deleted_files = replace_month_partitions(lake, job, month, token)
        result.status = "ok"
        _score(result, month, quality_db)
    except Exception as exc:  # one month failing must not stop or undo the others
        result.status = "failed"
        result.error = error_line(exc)  # with the Java cause of a py4j error
        logger.error("month %s failed: %s", month.month, result.error)
        _discard(lake, job, month, token)
    result.seconds = round(time.perf_counter() - started, 2)
    _month_artifact(result)
    return result


def _score(result: MonthResult, month: MonthSlice, quality_db: str | None) -> None:
    """The published slice's quality row, right after the publish (the lake has no
    transaction to share). The slice is published whatever happens here: a failure to
    store the row is a warning, not a failed month."""
    try:
        row = record_month_quality(quality_db, result, month,
                                   run_id())
    except Exception as exc:
        get_run_logger().warning("month %s: quality row not stored: %s", month.month,
                                 error_line(exc))
        return
    apply_quality(result, row)


def _discard(lake: str, job: ExtractionJob, month: MonthSlice, token: str) -> None:
    """Drop a failed month's staging; if even that fails, the next run's clean-up does."""
    try:
        discard_month_staging(lake, job, month, token)
    except Exception as exc:
        get_run_logger().warning("month %s: staging not removed (%s); the next run will",
                                 month.month, error_line(exc))


# The daily run extracts one day in minutes; one stuck past this is failed and reported.
# A long range by hand (many months) can take longer: run it month by month or with
# spark_sensor_extraction.with_options(timeout_seconds=None).
TIMEOUT_SECONDS = 3 * 3600


@flow(name="spark-sensor-extraction", timeout_seconds=TIMEOUT_SECONDS, on_failure=ON_FAILURE)
def spark_sensor_extraction(
    start: IsoDate | None = None,
    end: IsoDate | None = None,
    tag_patterns: TagPatterns = ["%"],  # noqa: B006 - Prefect needs JSON defaults; never mutated
    historian_db: str = "shopfloor-historian-db",
    lake: str = "shopfloor-lake",
    output_prefix: OutputPrefix = "sensor_data",
    table_pattern: TablePattern = "sqlt_data_1_{yyyy}_{mm}",
    good_quality: QualityCodes = [192],  # noqa: B006
    spark_master: SparkMaster = "local[*]",
    spark_conf: dict[str, str] = {},  # noqa: B006
    max_records_per_file: PositiveInt | None = None,
    num_partitions: PositiveInt = 8,
    recheck_days: RecheckDays = 3,
    quality_db: str | None = None,
    layout: Layout = "date",
    target_file_mb: TargetFileMb = 128,
) -> list[MonthResult]:
    """Extract historian readings with Spark into Parquet partitioned by date (or by tag
    and date).

    Reads the monthly tables that overlap the window through JDBC, keeps good readings
    of the matching tags and writes ``<output_prefix>/date=<YYYY-MM-DD>/`` (``tag`` a
    column, rows sorted by tag and time) or, with ``layout="tag"``,
    ``<output_prefix>/tag=<tag>/date=<YYYY-MM-DD>/``. A rerun replaces exactly the
    window's data of the matching tags (other tags' rows in a day's files are kept):
    each month is staged outside the output, checked, then swapped in through a
    manifest, so a failed month leaves the previous output exactly as it was.

    Args:
        start: first day to extract (UTC); leave start and end empty for yesterday: the
            UTC day before the run's logical date (a scheduled run: the day it was
            scheduled for, however late it starts).
        end: last day to extract, included (UTC).
        tag_patterns: SQL LIKE patterns on sqlth_te.tagpath (% any, _ one character).
        historian_db: SqlAlchemyConnector block of the historian database.
        lake: S3Bucket or LocalFileSystem block to write to.
        output_prefix: folder inside the lake, e.g. sensor_data.
        table_pattern: monthly table name with {yyyy} and {mm}.
        good_quality: dataintegrity codes kept (192 is good).
        spark_master: local[*], local[N] or a cluster URL such as spark://host:7077.
        spark_conf: extra Spark settings (spark.* keys), e.g. spark.jars.
        max_records_per_file: cap on rows per Parquet file (None: only the target size).
        num_partitions: parallel JDBC range reads on t_stamp per month.
        recheck_days: days before start whose rows per (tag, day) are compared between
            the source and the lake; a day that changed (late rows) is rewritten. 0: off.
        quality_db: SqlAlchemyConnector block holding ``quality_score``, for a quality
            row per published month or re-checked day (None: the scores go to the
            artifacts only; the historian database itself is never written); the
            matching historian tags are registered in its tag registry (``tags``).
        layout: ``date``: one folder per day, ``tag`` a column, rows sorted by tag and
            time (few files of useful size); ``tag``: one folder per tag and day (the
            old layout; a file per tag-day). One output prefix holds one layout.
        target_file_mb: size of the Parquet files in MiB; a day larger than this is cut
            into several files (rows per file from an estimated bytes per row).

    The limits a type can state are in the signature, so the server and the UI form
    refuse a bad value before a run exists; :func:`check_parameters` holds the rest.
    """
    start, end = resolve_window(start, end, logical_now().date())
    months = check_parameters(start, end, table_pattern=table_pattern, spark_conf=spark_conf)
    recheck = recheck_window(start, recheck_days)
    jdbc_kind, lake_url = _check_sources(historian_db, lake, output_prefix)
    present, missing = find_month_tables(historian_db, months)
    patterns = list(dict.fromkeys(tag_patterns))
    tags = load_historian_tags(historian_db, patterns, quality_db)
    if not tags:
        raise ShopfloorError(f"no tag in sqlth_te matches {patterns}")
    job = make_job(output_prefix, tags, patterns, good_quality, num_partitions,
                   target_file_mb, max_records_per_file, layout)
    results = [MonthResult(m.month, m.table, status="missing") for m in missing]
    checks, redo = _recheck(historian_db, lake, job,
                            plan_months(*recheck, table_pattern) if recheck else [], results)
    if work := work_list(present, redo):
        results += _run_months(spark_master, session_conf(jdbc_kind, spark_conf), historian_db,
                               lake, job, work, quality_db)
    results = ordered(results)
    if recheck:
        rows = recheck_rows(checks, results)
        create_table_artifact(key=f"{ARTIFACT_PREFIX}-recheck", table=rows,
                              description=recheck_description(rows))
    create_table_artifact(
        key=f"{ARTIFACT_PREFIX}-summary", table=[vars(r) for r in results],
        description=f"Spark extraction {start} .. {end} to {lake_url}"
                    + (f"; re-checked {recheck[0]} .. {recheck[1]}" if recheck else ""))
    get_run_logger().info("%s", counts_line(results))
    return conclude(verdict(results), results)


def _check_sources(historian_db: str, lake: str, output_prefix: str) -> tuple[str, str]:
    """Resolve the blocks once, only to fail fast (unknown block, unreachable database, a
    database JDBC cannot read); returns the JDBC kind (it picks the jars) and the output's
    URL. The tasks get the names."""
    engine = runtime.engine(historian_db)
    jdbc_kind = jdbc_source(engine.url).kind
    storage = runtime.storage(lake)
    check_connection(engine, historian_db)
    return jdbc_kind, storage.url(output_prefix)


def _recheck(historian_db: str, lake: str, job: ExtractionJob, months: list[MonthSlice],
             results: list[MonthResult]) -> tuple[list[DayCheck], list[MonthSlice]]:
    """The re-check window's days compared, and one slice per day that changed. A failed
    re-check is added to ``results`` (the run then fails); the window is still extracted."""
    try:
        present, _ = find_month_tables(historian_db, months) if months else ([], [])
        if not present:
            return [], []
        checks = recheck_lake_days(historian_db, lake, job, present)
    except Exception as exc:
        results.append(MonthResult("recheck", "", status="failed", kind="recheck",
                                   error=error_line(exc)))
        get_run_logger().error("re-check failed: %s", results[-1].error)
        return [], []
    return checks, day_slices(present, [c.date for c in checks if c.changed])


def _run_months(master: str, conf: dict[str, str], historian_db: str, lake: str,
                job: ExtractionJob, work: list[tuple[MonthSlice, str]],
                quality_db: str | None = None) -> list[MonthResult]:
    labels = [m.month for m, _ in work]
    progress = create_progress_artifact(
        0.0, key=f"{ARTIFACT_PREFIX}-progress",
        description=f"{len(work)} slice(s): {', '.join(labels[:3])}"
                    + (f" .. {labels[-1]}" if len(labels) > 3 else ""))
    results = []
    with spark_session(master, conf) as spark:
        for i, (month, kind) in enumerate(work, 1):
            results.append(_extract_month(spark, historian_db, lake, job, month, kind,
                                          quality_db))
            update_progress_artifact(progress, 100.0 * i / len(work))
    return results
