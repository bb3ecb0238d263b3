"""``shopfloor compaction``: register raw keys and compact them from the command line."""

from typing import Annotated

import typer

compaction_app = typer.Typer(no_args_is_help=True,
                             help="S3 compaction: raw JSON -> partitioned Parquet.")


@compaction_app.command("register")
def register(
    raw_logs: Annotated[str, typer.Option(help="Storage block of the raw JSON.")] =
        "shopfloor-raw-logs",
    prefix: Annotated[str, typer.Option(help="Folder inside the raw logs to list.")] = "",
    distrik: Annotated[str | None, typer.Option(
        help="District of every key (default: from the key layout).")] = None,
    metadata_db: Annotated[str, typer.Option(help="Database block of the registry.")] =
        "shopfloor-metadata-db",
    overlap_hours: Annotated[int, typer.Option(
        help="Hour folders listed again before each stream's last one.")] = 2,
    full_listing: Annotated[bool, typer.Option(
        help="List every stream from its start (finds late objects in old hours).")] = False,
) -> None:
    """List the objects that may be new under a prefix and register the new ones as PENDING."""
    from blocks.resolve import require_blocks
    from flows.s3_compaction import register_s3_keys
    from shopfloor.params import check_typed

    params = {"raw_logs": raw_logs, "prefix": prefix, "distrik": distrik,
              "metadata_db": metadata_db, "overlap_hours": overlap_hours,
              "full_listing": full_listing}
    # A bad value or an unknown block is one `error:` line, before a flow run exists.
    check_typed(register_s3_keys, **params)
    require_blocks(raw_logs, metadata_db)
    counts = register_s3_keys(**params)
    typer.echo(", ".join(f"{k} {v}" for k, v in counts.items()))


@compaction_app.command("run")
def run(
    distrik: Annotated[str | None, typer.Option(
        help="District whose keys to compact (default: every district with a backlog).")] =
        None,
    key_limit_per_run: Annotated[int, typer.Option(help="Most keys per run.")] = 1000,
    ram_limit: Annotated[str, typer.Option(help="DuckDB memory limit.")] = "10GB",
    raw_logs: Annotated[str, typer.Option(help="Storage block of the raw JSON.")] =
        "shopfloor-raw-logs",
    lake: Annotated[str, typer.Option(help="Storage block for the Parquet.")] =
        "shopfloor-lake",
    target_prefix: Annotated[str, typer.Option(help="Folder inside the lake.")] = "datalog_v2",
    metadata_db: Annotated[str, typer.Option(help="Database block of the registry.")] =
        "shopfloor-metadata-db",
    tz_offset_hours: Annotated[float, typer.Option(help="Offset of datetime_wita.")] = 8,
    claim_ttl_minutes: Annotated[int, typer.Option(help="Take over older claims.")] = 60,
    until_done: Annotated[bool, typer.Option(help="Run again until nothing is pending.")] =
        False,
) -> None:
    """Claim keys, compact them to Parquet, mark them SUCCESS or QUARANTINED."""
    from blocks.resolve import require_blocks
    from flows.s3_compaction import s3_compaction
    from shopfloor.params import check_typed

    params = {"distrik": distrik, "key_limit_per_run": key_limit_per_run,
              "ram_limit": ram_limit, "raw_logs": raw_logs, "lake": lake,
              "target_prefix": target_prefix, "metadata_db": metadata_db,
              "tz_offset_hours": tz_offset_hours, "claim_ttl_minutes": claim_ttl_minutes}
    # A bad value or an unknown block is one `error:` line, before a flow run exists.
    check_typed(s3_compaction, **params)
    require_blocks(raw_logs, lake, metadata_db)
    while True:
        s = s3_compaction(**params)
        typer.echo(", ".join(f"{k} {v}" for k, v in s.items()))
        if not until_done or s["keys_claimed"] == 0:
            return
