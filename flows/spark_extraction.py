"""``spark-sensor-extraction``: monthly historian tables -> partitioned Parquet in the lake.

Runs month by month (a backfill of a long range is one call); a failed month is reported
and does not undo the finished ones.
"""

import time
from datetime import UTC, datetime

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect_sqlalchemy import SqlAlchemyConnector
from sqlalchemy import Engine

from blocks.resolve import connector_url, load_block, load_engine, load_storage
from shopfloor.db.engine import check_connection
from shopfloor.db.schema import get_tables
from shopfloor.errors import ShopfloorError
from shopfloor.historian.plan import (
    ExtractionPlan,
    MonthSlice,
    check_parameters,
    resolve_window,
)
from shopfloor.params import IsoDate
from shopfloor.settings import db_schema
from shopfloor.spark.extract import ExtractionJob, MonthResult
from shopfloor.spark.jdbc import jdbc_source
from shopfloor.spark.session import session_conf, spark_session
from tasks.spark_extraction import (
    clear_month_partitions,
    find_month_tables,
    load_historian_tags,
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


def _extract_month(spark, engine: Engine, job: ExtractionJob, month: MonthSlice) -> MonthResult:
    logger = get_run_logger()
    result = MonthResult(month.month, month.table)
    started = time.perf_counter()
    try:
        result.deleted_files = clear_month_partitions(job, month)
        result.writer = write_month_parquet(spark, engine, job, month)
        result.source_rows, result.written_rows, result.files = validate_month_output(
            engine, job, month)
        result.status = "ok"
    except Exception as exc:  # one month failing must not stop or undo the others
        result.status = "failed"
        result.error = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:500]
        logger.error("month %s failed: %s", month.month, result.error)
    result.seconds = round(time.perf_counter() - started, 2)
    _month_artifact(result)
    return result


@flow(name="spark-sensor-extraction")
def spark_sensor_extraction(
    start: IsoDate | None = None,
    end: IsoDate | None = None,
    tag_patterns: list[str] = ["%"],  # noqa: B006 - Prefect needs JSON defaults; never mutated
    historian_db: str = "shopfloor-historian-db",
    lake: str = "shopfloor-lake",
    output_prefix: str = "sensor_data",
    table_pattern: str = "sqlt_data_1_{yyyy}_{mm}",
    good_quality: list[int] = [192],  # noqa: B006
    spark_master: str = "local[*]",
    spark_conf: dict[str, str] = {},  # noqa: B006
    max_records_per_file: int = 1_000_000,
    num_partitions: int = 8,
) -> list[MonthResult]:
    """Extract historian readings with Spark into Parquet partitioned by tag and date.

    Reads the monthly tables that overlap the window through JDBC, keeps good readings
    of the matching tags and writes ``<output_prefix>/tag=<tag>/date=<YYYY-MM-DD>/``.
    A rerun replaces exactly the window's partitions of the matching tags.

    Args:
        start: first day to extract (UTC); leave start and end empty for yesterday.
        end: last day to extract, included (UTC).
        tag_patterns: SQL LIKE patterns on sqlth_te.tagpath (% any, _ one character).
        historian_db: SqlAlchemyConnector block of the historian database.
        lake: S3Bucket or LocalFileSystem block to write to.
        output_prefix: folder inside the lake, e.g. sensor_data.
        table_pattern: monthly table name with {yyyy} and {mm}.
        good_quality: dataintegrity codes kept (192 is good).
        spark_master: local[*], local[N] or a cluster URL such as spark://host:7077.
        spark_conf: extra Spark settings (spark.* keys), e.g. spark.jars.
        max_records_per_file: cap on rows per Parquet file.
        num_partitions: parallel JDBC range reads on t_stamp per month.
    """
    start, end = resolve_window(start, end, datetime.now(UTC).date())
    plan = check_parameters(
        start, end, tag_patterns=tag_patterns, output_prefix=output_prefix,
        table_pattern=table_pattern, good_quality=good_quality, spark_master=spark_master,
        spark_conf=spark_conf, max_records_per_file=max_records_per_file,
        num_partitions=num_partitions)
    logger = get_run_logger()
    source = jdbc_source(connector_url(load_block(historian_db, SqlAlchemyConnector)))
    engine = load_engine(historian_db)
    storage = load_storage(lake)
    check_connection(engine, historian_db)
    tables = get_tables(db_schema())
    present, missing = find_month_tables(engine, tables, plan.months)
    tags = load_historian_tags(engine, tables, plan.tag_patterns)
    if not tags:
        raise ShopfloorError(f"no tag in sqlth_te matches {plan.tag_patterns}")
    job = ExtractionJob(source, tables, storage, plan.output_prefix, tags, plan.tag_patterns,
                        plan.good_quality, plan.num_partitions, plan.max_records_per_file)
    results = [MonthResult(m.month, m.table, status="missing") for m in missing]
    if present:
        results += _run_months(plan, job, engine, present)
    results.sort(key=lambda r: r.month)
    create_table_artifact(
        key=f"{ARTIFACT_PREFIX}-summary", table=[vars(r) for r in results],
        description=f"Spark extraction {start} .. {end} to {storage.url(plan.output_prefix)}")
    failed = [r for r in results if r.status == "failed"]
    logger.info("%d month(s) ok, %d missing, %d failed",
                sum(r.status == "ok" for r in results), len(missing), len(failed))
    if failed:
        raise ShopfloorError("failed month(s): " + "; ".join(
            f"{r.month}: {r.error}" for r in failed))
    return results


def _run_months(plan: ExtractionPlan, job: ExtractionJob, engine: Engine,
                months: list[MonthSlice]) -> list[MonthResult]:
    progress = create_progress_artifact(
        0.0, key=f"{ARTIFACT_PREFIX}-progress",
        description=f"{len(months)} month(s): {months[0].month} .. {months[-1].month}")
    results = []
    conf = session_conf(job.source.kind, plan.spark_conf)
    with spark_session(plan.spark_master, conf) as spark:
        for i, month in enumerate(months, 1):
            results.append(_extract_month(spark, engine, job, month))
            update_progress_artifact(progress, 100.0 * i / len(months))
    return results
