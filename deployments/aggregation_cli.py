"""``shopfloor hourly ...``: run the aggregation, backfill and master sync flows by hand.

Every command refuses bad parameters and unknown blocks with one ``error: ...`` line
before a flow run exists: the flow's own ``check_parameters``, the flow's parameter
types (the limits the Prefect server enforces on a deployment run), then
``require_blocks``.
"""

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from blocks.resolve import require_blocks
from shopfloor.aggregation.windows import DEFAULT_CHUNK_HOURS
from shopfloor.params import check_typed

if TYPE_CHECKING:
    from prefect.states import State

hourly_app = typer.Typer(no_args_is_help=True,
                         help="Hourly aggregation, backfill and master data sync.")

SourceOption = Annotated[str, typer.Option(help="SqlAlchemyConnector block of the raw readings.")]
TargetOption = Annotated[str, typer.Option(help="SqlAlchemyConnector block of the warehouse.")]
ZoneOption = Annotated[str, typer.Option(help="IANA time zone of the hour buckets.")]


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


@hourly_app.command("aggregate")
def aggregate(
    start: Annotated[datetime | None, typer.Option(help="Window start (local to --timezone).")]
    = None,
    end: Annotated[datetime | None, typer.Option(help="Window end, exclusive.")] = None,
    source_db: SourceOption = "shopfloor-source-db",
    target_db: TargetOption = "shopfloor-warehouse-db",
    timezone: ZoneOption = "UTC",
    late_data: Annotated[bool, typer.Option(help="Re-aggregate hours with late readings.")]
    = True,
    max_catchup_hours: Annotated[int, typer.Option(
        help="Incremental run: at most this many closed hours caught up.")] = 168,
    lateness_minutes: Annotated[int, typer.Option(
        help="Raw table without ingested_at: late readings found this far back.")] = 60,
) -> None:
    """Aggregate a window, or (no --start/--end) the closed hours since the last run plus
    late data; the hour still open is left for the next run."""
    from flows.hourly_aggregation import check_parameters, hourly_aggregation

    params = {"start": start, "end": end, "source_db": source_db, "target_db": target_db,
              "timezone": timezone, "late_data": late_data,
              "max_catchup_hours": max_catchup_hours, "lateness_minutes": lateness_minutes}
    check_parameters(start, end, timezone)
    check_typed(hourly_aggregation, **params)
    require_blocks(source_db, target_db)
    _finish(hourly_aggregation(**params, return_state=True))


@hourly_app.command("backfill")
def backfill(
    start_date: Annotated[datetime, typer.Argument(formats=["%Y-%m-%d"], help="First day.")],
    end_date: Annotated[datetime, typer.Argument(formats=["%Y-%m-%d"], help="Last day.")],
    chunk_hours: Annotated[int, typer.Option(help="Hours per chunk.")] = DEFAULT_CHUNK_HOURS,
    max_concurrency: Annotated[int, typer.Option(help="Chunks at the same time.")] = 4,
    source_db: SourceOption = "shopfloor-source-db",
    target_db: TargetOption = "shopfloor-warehouse-db",
    timezone: ZoneOption = "UTC",
) -> None:
    """Re-aggregate whole local days START_DATE..END_DATE (both included)."""
    from flows.backfill import check_parameters, hourly_backfill

    params = {"start_date": start_date.date(), "end_date": end_date.date(),
              "chunk_hours": chunk_hours, "max_concurrency": max_concurrency,
              "source_db": source_db, "target_db": target_db, "timezone": timezone}
    check_parameters(params["start_date"], params["end_date"], timezone)
    check_typed(hourly_backfill, **params)
    require_blocks(source_db, target_db)
    _echo(hourly_backfill(**params))


@hourly_app.command("sync-locations")
def sync_locations(
    source_db: SourceOption = "shopfloor-source-db",
    target_db: TargetOption = "shopfloor-warehouse-db",
) -> None:
    """Upsert locations and thresholds from source to target (master-data-sync)."""
    from flows.master_sync import master_data_sync

    require_blocks(source_db, target_db)
    _finish(master_data_sync(source_db=source_db, target_db=target_db, return_state=True))


@hourly_app.command("load-locations")
def load_locations(
    file: Annotated[Path, typer.Argument(help="CSV with loc_id, name, site, thresholds, "
                                         "active (e.g. config/locations.csv).")],
    target_db: TargetOption = "shopfloor-warehouse-db",
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
    from blocks.resolve import load_engine
    from shopfloor.aggregation.locations_csv import read_locations_csv, upsert_locations
    from shopfloor.db.schema import configured_tables
    from shopfloor.db.types import utcnow

    parsed = read_locations_csv(file)
    names = [source_db, target_db] if source else [target_db]
    require_blocks(*names)
    done: set[str] = set()
    for name in dict.fromkeys(names):
        engine = load_engine(name)
        url = engine.url.render_as_string(hide_password=True)
        if url in done:  # two blocks, one database: loaded already
            typer.echo(f"{name:<24} same database as above")
            continue
        done.add(url)
        with engine.begin() as conn:
            written, unchanged = upsert_locations(conn, configured_tables(), parsed, utcnow())
        typer.echo(f"{name:<24} {len(parsed.rows)} locations: {written} inserted or updated, "
                   f"{unchanged} unchanged")
