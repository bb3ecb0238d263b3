"""The demo's hourly aggregation step: master data, then the hours of the captured readings."""

from datetime import timedelta

from sqlalchemy import func, select

from flows.hourly_aggregation import hourly_aggregation
from flows.master_sync import master_data_sync
from shopfloor.db.schema import configured_tables
from shopfloor.db.types import utcnow
from shopfloor.db.upsert import upsert
from tasks import runtime

SOURCE, TARGET = "shopfloor-source-db", "shopfloor-warehouse-db"
DEMO_LIMITS = {"temperature_min": 10.0, "temperature_max": 35.0, "humidity_min": 20.0,
               "humidity_max": 80.0, "pcv_temperature_min": 10.0, "pcv_temperature_max": 60.0}


def _seed_locations(loc_ids: list[str]) -> None:
    """Demo master data for the captured locations; existing rows are left alone."""
    rows = [{"loc_id": loc, "name": f"demo location {loc}", "site": "DEMO", **DEMO_LIMITS,
             "active": True, "updated_at": utcnow()} for loc in loc_ids]
    with runtime.engine(SOURCE).begin() as conn:
        upsert(conn, configured_tables().location, rows, ["loc_id"], update_columns=[])


def aggregation_demo_step() -> list[str]:
    """Sync demo locations, aggregate the captured readings by hour, print the rows."""
    raw = configured_tables().temperature_raw
    with runtime.engine(SOURCE).connect() as conn:
        first, last, n = conn.execute(select(
            func.min(raw.c.capture_dt), func.max(raw.c.capture_dt), func.count())).one()
        loc_ids = list(conn.execute(select(raw.c.loc_id).distinct()).scalars())
    if not n:
        return ["temperature_raw is empty: nothing to aggregate (the capture wrote no rows)"]
    _seed_locations(loc_ids)
    sync = master_data_sync(source_db=SOURCE, target_db=TARGET)
    # end is exclusive and the window is widened to whole hours: one second past the last
    # reading includes it.
    summary = hourly_aggregation(start=first, end=last + timedelta(seconds=1),
                                 source_db=SOURCE, target_db=TARGET)
    lines = [f"master data: {sync['source_rows']} locations synced ({sync['upserted']} changed, "
             f"{sync['quarantined']} quarantined)",
             f"{n} raw readings from {first:%Y-%m-%d %H:%M:%S} to {last:%H:%M:%S} UTC -> "
             f"{summary['groups']} hourly rows ({summary['upserted']} upserted, "
             f"{summary['breaches']} threshold breaches)",
             "  loc_id  ymd       hh  temp max/avg    humidity max/avg  pcv max/avg     n"]
    for r in sorted(summary["rows"], key=lambda r: (r["loc_id"], r["ymd"], r["hh"])):
        lines.append(
            f"  {r['loc_id']:<7} {r['ymd']}  {r['hh']}  {_pair(r, 'temperature')}  "
            f"{_pair(r, 'humidity')}  {_pair(r, 'pcv_temperature')}  {r['sample_count']}")
    return lines


def _pair(row: dict, measure: str) -> str:
    hi, avg = row[f"{measure}_max"], row[f"{measure}_avg"]
    return f"{'-' if hi is None else f'{hi:.2f}':>6}/{'-' if avg is None else f'{avg:.2f}':<7}"
