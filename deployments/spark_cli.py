"""``shopfloor spark ...``: run the Spark historian extraction by hand."""

from datetime import datetime
from typing import Annotated

import typer

spark_app = typer.Typer(no_args_is_help=True, help="Spark historian extraction.")


def parse_conf(items: list[str]) -> dict[str, str]:
    """``["spark.a=1", ...]`` -> ``{"spark.a": "1"}``; a missing ``=`` is a clear error."""
    from shopfloor.errors import UserError

    conf = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--conf takes key=value, got {item!r}")
        conf[key.strip()] = value
    return conf


@spark_app.command("extract")
def extract(
    start: Annotated[datetime, typer.Argument(formats=["%Y-%m-%d"], help="First day (UTC).")],
    end: Annotated[datetime, typer.Argument(formats=["%Y-%m-%d"],
                                            help="Last day (UTC), included.")],
    tag_pattern: Annotated[list[str] | None, typer.Option(
        help="SQL LIKE pattern on tagpath (repeat for several).")] = None,
    historian_db: Annotated[str, typer.Option(help="SqlAlchemyConnector block.")]
    = "shopfloor-historian-db",
    lake: Annotated[str, typer.Option(help="S3Bucket or LocalFileSystem block.")]
    = "shopfloor-lake",
    output_prefix: Annotated[str, typer.Option(help="Folder inside the lake.")] = "sensor_data",
    master: Annotated[str, typer.Option(help="local[*], local[N] or spark://host:7077.")]
    = "local[*]",
    conf: Annotated[list[str] | None, typer.Option(help="Spark setting key=value (repeat).")]
    = None,
    num_partitions: Annotated[int, typer.Option(help="JDBC range reads per month.")] = 8,
    recheck_days: Annotated[int, typer.Option(
        help="Also re-check this many days before START and rewrite those that changed.")]
    = 0,
    layout: Annotated[str, typer.Option(
        help="date: date=<day>/ files with a tag column; tag: tag=<key>/date=<day>/.")]
    = "date",
    target_file_mb: Annotated[int, typer.Option(help="Parquet file size in MiB.")] = 128,
) -> None:
    """Extract historian months START..END to Parquet partitioned by date (or tag and date)."""
    from blocks.resolve import require_blocks
    from flows.spark_extraction import spark_sensor_extraction
    from shopfloor.historian.plan import check_parameters
    from shopfloor.params import check_typed

    params = dict(tag_patterns=tag_pattern or ["%"], historian_db=historian_db, lake=lake,
                  output_prefix=output_prefix, table_pattern="sqlt_data_1_{yyyy}_{mm}",
                  good_quality=[192], spark_master=master, spark_conf=parse_conf(conf or []),
                  max_records_per_file=None, num_partitions=num_partitions,
                  recheck_days=recheck_days, layout=layout, target_file_mb=target_file_mb)
    # Bad values and unknown blocks: one line each, before a flow run exists.
    check_typed(spark_sensor_extraction, **params)
    check_parameters(start.date(), end.date(), table_pattern=params["table_pattern"],
                     spark_conf=params["spark_conf"])
    require_blocks(historian_db, lake)
    # A person running a range by hand waits for it: the deployment's 3 h timeout (sized
    # for one day) does not apply here.
    run = spark_sensor_extraction.with_options(timeout_seconds=None)
    results = run(start=start.date(), end=end.date(), **params)
    for r in results:
        typer.echo(f"{r.month}  {r.kind:<7} {r.status:<8} {r.written_rows:>10} rows  "
                   f"{r.files:>6} files  {r.seconds:>8} s  {r.error}")
