"""``shopfloor lake``: maintenance of the Parquet lake from the command line."""

from typing import Annotated

import typer

lake_app = typer.Typer(no_args_is_help=True, help="Lake maintenance: merge small files.")


@lake_app.command("merge")
def merge(
    lake: Annotated[str, typer.Option(help="Storage block of the lake.")] = "shopfloor-lake",
    prefix: Annotated[list[str] | None, typer.Option(
        help="Dataset folder (repeatable; default: datalog_v2 and sensor_data).")] = None,
    grace_days: Annotated[int, typer.Option(help="Days a partition stays open.")] = 3,
    target_file_mb: Annotated[int, typer.Option(help="Size of the merged files.")] = 128,
    min_files: Annotated[int, typer.Option(help="Small files a partition needs.")] = 2,
    metadata_db: Annotated[str, typer.Option(help="Database block of the claims.")] =
        "shopfloor-metadata-db",
    ram_limit: Annotated[str, typer.Option(help="DuckDB memory limit.")] = "2GB",
) -> None:
    """Merge the small files of closed partitions (runs the lake-maintenance flow)."""
    from blocks.resolve import require_blocks
    from flows.lake_maintenance import DEFAULT_PREFIXES, lake_maintenance
    from shopfloor.params import check_typed

    params = {"lake": lake, "prefixes": prefix or DEFAULT_PREFIXES, "grace_days": grace_days,
              "target_file_mb": target_file_mb, "min_files": min_files,
              "metadata_db": metadata_db, "ram_limit": ram_limit}
    # A bad value or an unknown block is one `error:` line, before a flow run exists.
    check_typed(lake_maintenance, **params)
    require_blocks(lake, metadata_db)
    summary = lake_maintenance(**params)
    typer.echo(", ".join(f"{k} {v}" for k, v in summary.items()))
