"""The ``shopfloor`` command line. Errors a user can fix print as one line, exit code 1."""

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from deployments.aggregation_cli import hourly_app
from deployments.compaction_cli import compaction_app
from deployments.modbus_cli import modbus_app
from deployments.simulate_cli import simulate_app
from deployments.spark_cli import spark_app
from shopfloor.errors import ShopfloorError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Shop-floor sensor data pipelines on Prefect 3.")
db_app = typer.Typer(no_args_is_help=True, help="Database tables.")
blocks_app = typer.Typer(no_args_is_help=True, help="Prefect blocks.")
app.add_typer(db_app, name="db")
app.add_typer(blocks_app, name="blocks")
app.add_typer(simulate_app, name="simulate")
app.add_typer(modbus_app, name="modbus")
app.add_typer(compaction_app, name="compaction")
app.add_typer(hourly_app, name="hourly")
app.add_typer(spark_app, name="spark")

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
    from blocks.databases import init_databases

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


@app.command("deploy")
def deploy(
    pool: Annotated[str | None, typer.Option(help="Work pool name (default: "
                                             "shopfloor-docker, or shopfloor-process "
                                             "with --local).")] = None,
    local: Annotated[bool, typer.Option("--local", help="A process pool and no image: "
                                        "for a machine without Docker.")] = False,
    push: Annotated[bool, typer.Option(help="Push the built image to its registry.")] = True,
    build: Annotated[bool, typer.Option(help="Build the image (else use --image).")] = True,
    image: Annotated[str, typer.Option(help="Image to run when --no-build.")]
    = "shopfloor:latest",
    paused: Annotated[bool, typer.Option("--paused", help="Register the schedules "
                                         "inactive.")] = False,
) -> None:
    """Create the work pool if missing and deploy every flow of prefect.yaml."""
    from deployments.deploy import (
        ensure_work_pool,
        load_config,
        plan_deploy,
        project_root,
        run_deploy,
    )

    root = project_root()
    mode = "local" if local else ("docker-no-build" if not build else
                                  "docker-no-push" if not push else "docker")
    plan = plan_deploy(load_config(root), mode, pool, root, image=image, paused=paused)
    created = ensure_work_pool(plan.pool, plan.pool_type)
    typer.echo(f"work pool {plan.pool} ({plan.pool_type}): {'created' if created else 'exists'}")
    run_deploy(plan, root)
    names = [f"{d['entrypoint'].split(':')[1]} / {d['name']}" for d in plan.config["deployments"]]
    typer.echo(f"deployed {len(names)} deployments to {plan.pool}")


@app.command("serve")
def serve(
    flow: Annotated[list[str] | None, typer.Option(help="Serve only these flow names.")] = None,
) -> None:
    """Serve every flow of prefect.yaml from this process, with its schedules."""
    from prefect import serve as prefect_serve

    from deployments.deploy import load_config, project_root
    from deployments.serve import runner_deployments

    root = project_root()
    prefect_serve(*runner_deployments(load_config(root), root, only=flow))


class _UserErrorsWithoutTraceback(logging.Filter):
    """A flow or task run that failed with a :class:`ShopfloorError` logs its message
    without the traceback: the error is the user's to fix, and the CLI prints it as one
    ``error:`` line anyway. A logger filter (not a handler filter) because Prefect
    rebuilds its handlers when a run starts; it is installed by the CLI process only, so
    deployments and plain Python calls keep the full record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], ShopfloorError):
            record.exc_info, record.exc_text = None, None
        return True


def _quiet_user_error_tracebacks() -> None:
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).addFilter(_UserErrorsWithoutTraceback())


def main() -> None:
    """Console entry point: one clear line for errors a user can fix."""
    # Ephemeral mode starts a private Prefect server; on a busy 2-core machine it can
    # take longer than Prefect's 20 s default.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    if os.environ.get("PREFECT_HOME"):  # Prefect creates it only if its parent exists
        Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)
    _quiet_user_error_tracebacks()
    try:
        app()
    except ShopfloorError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
