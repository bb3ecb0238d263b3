"""``shopfloor spark ...``: run the Spark historian extraction by hand."""

from datetime import UTC, datetime
from typing import Any

import typer

from deployments.flowcli import As, flow_command

spark_app = typer.Typer(no_args_is_help=True)


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


def _check(params: dict[str, Any]) -> None:
    """The flow's rules across fields, on the window the flow will extract (no dates:
    yesterday, UTC)."""
    from shopfloor.historian.plan import check_parameters, resolve_window

    start, end = resolve_window(params["start"], params["end"], datetime.now(UTC).date())
    check_parameters(start, end, table_pattern=params["table_pattern"],
                     spark_conf=params["spark_conf"])


@flow_command(spark_app, "flows.spark_extraction:spark_sensor_extraction", name="extract",
              params={"start": As(argument=True), "end": As(argument=True),
                      "tag_patterns": As(option="--tag-pattern"),
                      "spark_master": As(option="--master"),
                      "spark_conf": As(option="--conf", parse=parse_conf,
                                       help="Spark setting key=value, e.g. spark.jars=... "
                                            "(repeat).")},
              check=_check)
def extract(params: dict[str, Any]) -> None:
    """Extract historian days START..END (UTC, both included; none: yesterday) to Parquet
    partitioned by date (or tag and date)."""
    from blocks.resolve import require_blocks
    from flows.spark_extraction import spark_sensor_extraction

    require_blocks(params["historian_db"], params["lake"])
    # A person running a range by hand waits for it: the deployment's 3 h timeout (sized
    # for one day) does not apply here.
    run = spark_sensor_extraction.with_options(timeout_seconds=None)
    for r in run(**params):
        typer.echo(f"{r.month}  {r.kind:<7} {r.status:<8} {r.written_rows:>10} rows  "
                   f"{r.files:>6} files  {r.seconds:>8} s  {r.error}")
