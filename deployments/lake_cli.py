"""``shopfloor lake``: maintenance of the Parquet lake from the command line."""

from typing import Any

import typer

from deployments.flowcli import As, flow_command

lake_app = typer.Typer(no_args_is_help=True)


@flow_command(lake_app, "flows.lake_maintenance:lake_maintenance", name="merge",
              params={"prefixes": As(option="--prefix")})
def merge(params: dict[str, Any]) -> None:
    """Merge the small files of closed partitions (runs the lake-maintenance flow)."""
    from blocks.resolve import require_blocks
    from flows.lake_maintenance import lake_maintenance

    require_blocks(params["lake"], params["metadata_db"])
    summary = lake_maintenance(**params)
    typer.echo(", ".join(f"{k} {v}" for k, v in summary.items()))


@flow_command(lake_app, "flows.tag_lake_export:tag_lake_export", name="export-tags")
def export_tags(params: dict[str, Any]) -> None:
    """Export the tag samples ingested since the last run (runs the tag-lake-export flow)."""
    from blocks.resolve import require_blocks
    from flows.tag_lake_export import tag_lake_export

    require_blocks(params["warehouse_db"], params["lake"])
    summary = tag_lake_export(**params)
    typer.echo(", ".join(f"{k} {v}" for k, v in summary.items()))
