"""``shopfloor hourly ...``: run the aggregation, backfill and master sync flows by hand.

The flow commands' options are the flows' parameters (:mod:`deployments.flowcli`). Every
command refuses bad parameters and unknown blocks with one ``error: ...`` line before a
flow run exists: the option's limits, the flow's own ``check_parameters``, the flow's
parameter types (what the Prefect server enforces on a deployment run), then
``require_blocks``.
"""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deployments.flowcli import As, flow_command

if TYPE_CHECKING:
    from prefect.states import State

hourly_app = typer.Typer(no_args_is_help=True)

def _echo(summary: dict) -> None:
    for key, value in summary.items():
        if key != "rows":
            typer.echo(f"{key:<14} {value}")


def _finish(state: "State") -> None:
    """Print a run's summary, and its state when it is not a plain Completed (a
    ``Degraded`` or ``Idle`` run says why); a failed run raises its error."""
    _echo(state.result())
    if state.name != "Completed":
        typer.echo(f"{state.name}: {state.message}")


@flow_command(hourly_app, "flows.hourly_aggregation:hourly_aggregation", name="aggregate",
              check="flows.hourly_aggregation:check_parameters")
def aggregate(params: dict[str, Any]) -> None:
    """Aggregate a window, or (no --start/--end) the closed hours since the last run plus
    late data; the hour still open is left for the next run."""
    from blocks.resolve import require_blocks
    from flows.hourly_aggregation import hourly_aggregation

    require_blocks(params["source_db"], params["target_db"])
    _finish(hourly_aggregation(**params, return_state=True))


@flow_command(hourly_app, "flows.backfill:hourly_backfill", name="backfill",
              params={"start_date": As(argument=True), "end_date": As(argument=True)},
              check="flows.backfill:check_parameters")
def backfill(params: dict[str, Any]) -> None:
    """Re-aggregate whole local days START_DATE..END_DATE (both included)."""
    from blocks.resolve import require_blocks
    from flows.backfill import hourly_backfill

    require_blocks(params["source_db"], params["target_db"])
    _echo(hourly_backfill(**params))


@flow_command(hourly_app, "flows.master_sync:master_data_sync", name="sync-locations")
def sync_locations(params: dict[str, Any]) -> None:
    """Upsert locations and thresholds from source to target (master-data-sync)."""
    from blocks.resolve import require_blocks
    from flows.master_sync import master_data_sync

    require_blocks(params["source_db"], params["target_db"])
    _finish(master_data_sync(**params, return_state=True))


@hourly_app.command("load-locations")
def load_locations(
    file: Annotated[Path, typer.Argument(help="CSV with loc_id, name, site, thresholds, "
                                         "active (e.g. config/locations.csv).")],
    target_db: Annotated[str, typer.Option(
        help="SqlAlchemyConnector block of the warehouse.")] = "shopfloor-warehouse-db",
    source_db: Annotated[str, typer.Option(
        help="Master database block, loaded too so master-data-sync keeps the rows.")]
    = "shopfloor-source-db",
    source: Annotated[bool, typer.Option(
        help="Also load into --source-db (--no-source: the warehouse only).")] = True,
) -> None:
    """Upsert locations and thresholds from a CSV file (checked whole before writing).

    Rows go into the master table of --source-db and into --target-db (once when both
    blocks are one database), so threshold alerts apply from the next hourly run and the
    daily master-data-sync keeps them. Locations not in the file are left as they are.
    """
    from blocks.resolve import require_blocks
    from shopfloor.aggregation.locations_csv import read_locations_csv, upsert_locations
    from shopfloor.db.schema import configured_tables
    from shopfloor.db.types import utcnow
    from tasks import runtime

    parsed = read_locations_csv(file)
    names = [source_db, target_db] if source else [target_db]
    require_blocks(*names)
    done: set[str] = set()
    for name in dict.fromkeys(names):
        engine = runtime.engine(name)
        url = engine.url.render_as_string(hide_password=True)
        if url in done:  # two blocks, one database: loaded already
            typer.echo(f"{name:<24} same database as above")
            continue
        done.add(url)
        with engine.begin() as conn:
            written, unchanged = upsert_locations(conn, configured_tables(), parsed, utcnow())
        typer.echo(f"{name:<24} {len(parsed.rows)} locations: {written} inserted or updated, "
                   f"{unchanged} unchanged")
