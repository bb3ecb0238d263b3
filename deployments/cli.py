"""The ``shopfloor`` command line. Errors a user can fix print as one line, exit code 2.

The command groups that run flows load when they are used: importing the flows (their
signatures are the commands' options) takes about a second, which ``shopfloor --help``
and the light commands do not pay.
"""

import importlib
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from shopfloor.errors import DataIntegrityError, ShopfloorError, UserError

# name -> (module:Typer, help); in the order `shopfloor --help` lists them.
GROUPS: dict[str, tuple[str, str]] = {
    "simulate": ("deployments.simulate_cli:simulate_app",
                 "Simulators for local runs and tests."),
    "modbus": ("deployments.modbus_cli:modbus_app", "Modbus devices (ModbusDevice blocks)."),
    "compaction": ("deployments.compaction_cli:compaction_app",
                   "S3 compaction: raw JSON -> partitioned Parquet."),
    "hourly": ("deployments.aggregation_cli:hourly_app",
               "Hourly aggregation, backfill and master data sync."),
    "spark": ("deployments.spark_cli:spark_app", "Spark historian extraction."),
    "credentials": ("deployments.credentials_cli:credentials_app",
                    "Database credentials from AWS Secrets Manager."),
    "lake": ("deployments.lake_cli:lake_app", "Lake maintenance: merge small files."),
    "tags": ("deployments.tags_cli:tags_app", "The tag registry: import maps, list tags."),
    "mqtt": ("deployments.mqtt_cli:mqtt_app", "MQTT ingestion: JSON topics and Sparkplug B."),
}


def load_group(name: str) -> TyperGroup:
    """The command group ``name`` of :data:`GROUPS`, imported now."""
    target, text = GROUPS[name]
    module, attribute = target.split(":")
    group = typer.main.get_group(getattr(importlib.import_module(module), attribute))
    group.name, group.help = name, text
    return group


class _Shopfloor(TyperGroup):
    """The top-level group: :data:`GROUPS` are listed by name and help and imported when
    one is run; a usage error anywhere below (a bad value, an unknown option) becomes a
    :class:`UserError`, so it prints as one ``error:`` line with exit code 2."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for name, (_, text) in GROUPS.items():  # placeholders for the help's listing
            self.commands.setdefault(name, TyperCommand(name=name, help=text))

    def resolve_command(self, ctx: typer.Context, args: list[str]) -> Any:
        name, command, rest = super().resolve_command(ctx, args)
        if name in GROUPS and not isinstance(command, TyperGroup):
            command = self.commands[name] = load_group(name)
        return name, command, rest

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with _usage_errors_as_user_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: typer.Context) -> Any:
        with _usage_errors_as_user_errors():
            return super().invoke(ctx)


@contextmanager
def _usage_errors_as_user_errors() -> Iterator[None]:
    try:
        yield
    except typer.TyperException as exc:
        # A usage error is a ClickException with exit code 2; NoArgsIsHelpError (no
        # arguments: the help was shown) is one too and stays as it is.
        if getattr(exc, "exit_code", None) != 2 or type(exc).__name__ == "NoArgsIsHelpError":
            raise
        ctx = getattr(exc, "ctx", None)
        # A bad value names its option; an unknown option or a missing one needs the help.
        hint = ("" if ctx is None or isinstance(exc, typer.BadParameter)
                else f" (try '{ctx.command_path} --help')")
        # typer words a failed choice as pydantic does ("Value error, 'x' is not one of").
        message = exc.format_message().replace(": Value error, ", ": ")  # type: ignore[attr-defined]
        raise UserError(message + hint) from None


app = typer.Typer(cls=_Shopfloor, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False,
                  help="Shop-floor sensor data pipelines on Prefect 3.")
db_app = typer.Typer(no_args_is_help=True, help="Database tables.")
blocks_app = typer.Typer(no_args_is_help=True, help="Prefect blocks.")
app.add_typer(db_app, name="db")
app.add_typer(blocks_app, name="blocks")

SchemaOption = Annotated[
    str | None,
    typer.Option(help="Schema for the tables (default: $SHOPFLOOR_DB_SCHEMA)."),
]


BlockOption = Annotated[str | None, typer.Option(help="SqlAlchemyConnector block to use.")]
UrlOption = Annotated[str | None, typer.Option(help="Database URL instead of a block.")]


@db_app.command("init")
def db_init(
    block: BlockOption = None,
    url: UrlOption = None,
    schema: SchemaOption = None,
    upgrade: Annotated[bool, typer.Option(
        "--upgrade",
        help="Also add missing columns and indexes to existing tables (never drops).")] = False,
    table: Annotated[list[str] | None, typer.Option(
        help="Only this table (its DESIGN.md name, e.g. pipeline_watermark); repeatable.")
    ] = None,
) -> None:
    """Create every missing table of DESIGN.md (idempotent). Default: all database blocks.

    Table names come from $SHOPFLOOR_TABLE_<TABLE> (e.g. SHOPFLOOR_TABLE_TEMPERATURE_HOURLY).
    """
    from tasks.databases import init_databases

    for line in init_databases(block=block, url=url, schema=schema, add_columns=upgrade,
                               only=table):
        typer.echo(line)


@db_app.command("check")
def db_check(
    block: BlockOption = None,
    url: UrlOption = None,
    schema: SchemaOption = None,
    table: Annotated[list[str] | None, typer.Option(
        help="Check only this table (its DESIGN.md name, e.g. temperature_hourly); "
             "repeatable.")] = None,
) -> None:
    """Compare the tables the flows need with a database, changing nothing.

    Exit code 1 when a table, a column or a key the flows need is missing.
    """
    from tasks.databases import check_databases

    ok = True
    for result in check_databases(block=block, url=url, schema=schema, only=table):
        typer.echo("\n".join(result.lines()))
        ok = ok and result.ok
    if not ok:
        raise typer.Exit(1)


@blocks_app.command("bootstrap")
def blocks_bootstrap() -> None:
    """Create or update the default blocks from environment variables (no secret printed)."""
    from blocks.bootstrap import bootstrap_blocks
    from shopfloor.settings import shopfloor_home

    for r in bootstrap_blocks(os.environ, shopfloor_home()):
        typer.echo(f"{r.name:<24} {r.block_type:<20} {r.summary}")


@blocks_app.command("import-airflow")
def blocks_import_airflow(
    file: Annotated[Path | None, typer.Option(
        help="A file of `airflow connections export` (.json, .yaml/.yml or .env).")] = None,
    env: Annotated[bool, typer.Option(
        "--env", help="Read the AIRFLOW_CONN_<ID> environment variables.")] = False,
    map_: Annotated[list[str] | None, typer.Option(
        "--map", help="CONN_ID=BLOCK_NAME (repeatable); unmapped: airflow-<conn_id>.")] = None,
    only: Annotated[list[str] | None, typer.Option(
        help="Import only this connection id (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print what would be created; create nothing.")] = False,
) -> None:
    """Create SqlAlchemyConnector / AwsCredentials blocks from Airflow connections.

    Prints each block (type, name, host, database; never a secret). A connection that
    cannot become a block is one `refused` line; the others are still created, and the
    exit code is 1.
    """
    from shopfloor.airflow.targets import Refusal, parse_name_map

    if file is None and not env:
        raise UserError("give --file PATH and/or --env")
    names = parse_name_map(map_ or [])
    from blocks.airflow_import import import_connections, read_connections

    connections = read_connections(file, os.environ if env else None)
    ids = {c.conn_id.lower().replace("-", "_") for c in connections}
    for wanted in [*names, *(o.lower().replace("-", "_") for o in only or [])]:
        if wanted not in ids:
            typer.echo(f"warning: no connection {wanted!r} was found", err=True)
    if not connections:
        raise UserError("no Airflow connections found")
    outcome = import_connections(connections, names, only or [], dry_run)
    verb = "would create" if dry_run else "created"
    for item in outcome:
        if isinstance(item, Refusal):
            typer.echo(item.line(), err=True)
        else:
            typer.echo(f"{verb} {item.line()}")
    if any(isinstance(item, Refusal) for item in outcome):
        raise typer.Exit(1)


@app.command("demo")
def demo() -> None:
    """Run the whole chain on embedded defaults (SQLite, local folders, ephemeral Prefect)."""
    from demo_steps.flow import demo as demo_flow

    demo_flow()


@app.command("dashboard")
def dashboard(
    port: Annotated[int, typer.Option(help="Port to serve the page on.")] = 8501,
    address: Annotated[str, typer.Option(
        help="Address to listen on (0.0.0.0: reachable from other machines; the page has "
             "no login).")] = "127.0.0.1",
    warehouse_db: Annotated[str, typer.Option(
        help="SqlAlchemyConnector block of the readings, hourly rows, locations.")]
    = "shopfloor-warehouse-db",
    metadata_db: Annotated[str, typer.Option(
        help="SqlAlchemyConnector block of the s3_object registry.")]
    = "shopfloor-metadata-db",
    timezone: Annotated[str, typer.Option(
        help="IANA zone of the hourly table's ymd/hh (the zone the hourly flow runs with).")]
    = "UTC",
) -> None:
    """Serve the plant dashboard (Streamlit) on the warehouse and metadata blocks."""
    from deployments.dashboard import run_dashboard

    raise typer.Exit(run_dashboard(port, address, warehouse_db, metadata_db, timezone))


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
    override: Annotated[Path | None, typer.Option(
        help="YAML changing some deployments' schedules/parameters and automations' "
             "windows (see docs/operations.md), without a second prefect.yaml.")] = None,
) -> None:
    """Create the work pool if missing, deploy every flow of prefect.yaml, then create the
    limits, work queues and automations of operations.yaml."""
    from deployments.deploy import (
        ensure_work_pool,
        load_config,
        load_override,
        plan_deploy,
        project_root,
        run_deploy,
    )
    from deployments.operations import apply_operations

    root = project_root()
    changes = load_override(override)
    mode = "local" if local else ("docker-no-build" if not build else
                                  "docker-no-push" if not push else "docker")
    plan = plan_deploy(load_config(root), mode, pool, root, image=image, paused=paused,
                       override=changes)
    created = ensure_work_pool(plan.pool, plan.pool_type)
    typer.echo(f"work pool {plan.pool} ({plan.pool_type}): {'created' if created else 'exists'}")
    # Queues before deployments: a deployment naming a missing queue would create it
    # with the default priority.
    _report_operations(apply_operations(root, plan.pool, changes))
    run_deploy(plan, root)
    names = [f"{d['entrypoint'].split(':')[1]} / {d['name']}" for d in plan.config["deployments"]]
    typer.echo(f"deployed {len(names)} deployments to {plan.pool}")


def _report_operations(applied) -> None:  # noqa: ANN001 - AppliedOperations, imported late
    typer.echo("concurrency limits: " + (", ".join(applied.limits) or "none"))
    if applied.queues:
        typer.echo("work queues: " + ", ".join(applied.queues))
    typer.echo("automations: " + ", ".join(applied.automations))
    typer.echo("notifications go to: " + (", ".join(applied.notify) or "nobody"))
    for line in applied.warnings:
        typer.echo(f"warning: {line}", err=True)


# A flow process takes 10-35 s from submission to its first task on a busy 2-core host
# (interpreter, imports, block loads; measured in the soak with five runs starting in
# the same minute). Runs window their work by their scheduled time, not by when they
# start, so starting them early only takes that delay off capture's first slot.
PREFETCH_SECONDS = 30


@app.command("worker", context_settings={"allow_extra_args": True,
                                         "ignore_unknown_options": True})
def worker(
    ctx: typer.Context,
    pool: Annotated[str, typer.Option(help="Work pool to take runs from.")]
    = "shopfloor-process",
    grace_seconds: Annotated[float, typer.Option(
        help="How long flow runs get to stop cleanly when the worker is stopped.")] = 60.0,
    prefetch_seconds: Annotated[int, typer.Option(
        help="Start runs this long before their scheduled time (Prefect's default is 10).")]
    = PREFETCH_SECONDS,
) -> None:
    """Prefect's process worker for POOL; stopping it (Ctrl-C, SIGTERM) stops its flow runs
    cleanly first. Other options go to `prefect worker start`."""
    from deployments.worker import run_worker

    extra = ["--prefetch-seconds", str(prefetch_seconds), *ctx.args]
    raise typer.Exit(run_worker(pool, extra, grace_seconds))


@app.command("docker-worker", context_settings={"allow_extra_args": True,
                                                "ignore_unknown_options": True})
def docker_worker(
    ctx: typer.Context,
    pool: Annotated[str, typer.Option(help="Docker work pool to take runs from.")]
    = "shopfloor-docker",
    name: Annotated[str | None, typer.Option(
        help="Worker name, a label on its containers (default: docker-<host>-<pid>).")]
    = None,
    grace_seconds: Annotated[float, typer.Option(
        help="How long a stopped container gets before SIGKILL.")] = 30.0,
    prefetch_seconds: Annotated[int, typer.Option(
        help="Start runs this long before their scheduled time (Prefect's default is 10).")]
    = PREFETCH_SECONDS,
) -> None:
    """Prefect's Docker worker for POOL under a supervisor: if the worker dies, or is
    stopped, the containers of its runs are stopped (their runs end Crashed) instead of
    running on unmanaged; a run killed over its memory limit says so in its state.
    Other options go to `prefect worker start` (docs/docker.md)."""
    import os
    import socket

    from deployments.docker_worker import run_docker_worker

    extra = ["--prefetch-seconds", str(prefetch_seconds), *ctx.args]
    worker_name = name or f"docker-{socket.gethostname()}-{os.getpid()}"
    raise typer.Exit(run_docker_worker(pool, worker_name, extra, grace_seconds))


@app.command("serve")
def serve(
    flow: Annotated[list[str] | None, typer.Option(help="Serve only these flow names.")] = None,
) -> None:
    """Serve every flow of prefect.yaml from this process, with its schedules, after
    creating the limits and automations of operations.yaml."""
    from prefect import serve as prefect_serve

    from deployments.deploy import load_config, project_root
    from deployments.operations import apply_operations
    from deployments.serve import runner_deployments

    root = project_root()
    _report_operations(apply_operations(root))
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
    if os.environ.get("PREFECT_HOME"):  # Prefect creates it only if its parent exists
        Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)
    _quiet_user_error_tracebacks()
    try:
        app()
    except ShopfloorError as exc:
        label = "stopped (data integrity)" if isinstance(exc, DataIntegrityError) else "error"
        typer.echo(f"{label}: {exc}", err=True)
        sys.exit(exit_code(exc))


def exit_code(exc: ShopfloorError) -> int:
    """2: the user can fix it (like a usage error); 3: stopped to keep the data right;
    1: anything else that failed clearly (an unreachable database, a failed run)."""
    if isinstance(exc, UserError):
        return 2
    if isinstance(exc, DataIntegrityError):
        return 3
    return 1


if __name__ == "__main__":
    main()
