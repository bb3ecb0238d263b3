"""The ``shopfloor`` command line. Errors a user can fix print as one line, exit code 1."""

import os
import sys
from typing import Annotated

import typer

from deployments.simulate_cli import modbus_app, simulate_app
from shopfloor.errors import ShopfloorError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Shop-floor sensor data pipelines on Prefect 3.")
db_app = typer.Typer(no_args_is_help=True, help="Database tables.")
blocks_app = typer.Typer(no_args_is_help=True, help="Prefect blocks.")
app.add_typer(db_app, name="db")
app.add_typer(blocks_app, name="blocks")
app.add_typer(simulate_app, name="simulate")
app.add_typer(modbus_app, name="modbus")

SchemaOption = Annotated[
    str | None,
    typer.Option(help="Schema for the tables (default: $SHOPFLOOR_DB_SCHEMA)."),
]


@db_app.command("init")
def db_init(
    block: Annotated[str | None, typer.Option(help="SqlAlchemyConnector block to use.")] = None,
    url: Annotated[str | None, typer.Option(help="Database URL instead of a block.")] = None,
    schema: SchemaOption = None,
) -> None:
    """Create every table of DESIGN.md (idempotent). Default: all database blocks."""
    from deployments.commands import init_databases

    for line in init_databases(block=block, url=url, schema=schema):
        typer.echo(line)


@blocks_app.command("bootstrap")
def blocks_bootstrap() -> None:
    """Create or update the default blocks from environment variables (no secret printed)."""
    from blocks.bootstrap import bootstrap_blocks
    from shopfloor.settings import shopfloor_home

    for r in bootstrap_blocks(os.environ, shopfloor_home()):
        typer.echo(f"{r.name:<24} {r.block_type:<20} {r.summary}")


@app.command("demo")
def demo() -> None:
    """Run the whole chain on embedded defaults (SQLite, local folders, ephemeral Prefect)."""
    from flows.demo import demo as demo_flow

    demo_flow()


def main() -> None:
    """Console entry point: one clear line for errors a user can fix."""
    try:
        app()
    except ShopfloorError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
