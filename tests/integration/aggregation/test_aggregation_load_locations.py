"""`shopfloor hourly load-locations FILE`: the shipped CSV into real SQLite and PostgreSQL,
then thresholds fire in an hourly run and the daily master sync keeps the rows."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from deployments.cli import app
from flows.hourly_aggregation import hourly_aggregation
from flows.master_sync import master_data_sync

SHIPPED = Path(__file__).parents[3] / "config" / "locations.csv"


def locations(db) -> dict[str, dict]:
    loc = db.tables.location
    with db.engine.connect() as conn:
        return {r["loc_id"]: dict(r) for r in conn.execute(select(loc)).mappings()}


def invoke(*args: str):
    return CliRunner().invoke(app, ["hourly", "load-locations", *args])


def test_the_shipped_csv_loads_into_source_and_warehouse_and_survives_master_sync(
        sqlite_db, db):
    result = invoke(str(SHIPPED), "--source-db", sqlite_db.block, "--target-db", db.block)
    assert result.exit_code == 0, result.output
    assert "5 locations: 5 inserted or updated, 0 unchanged" in result.output
    got = locations(db)
    assert sorted(got) == ["L001", "L002", "L003", "L004", "L005"]
    assert (got["L005"]["temperature_max"], got["L004"]["pcv_temperature_max"]) == (24.0, None)
    assert got["L001"]["name"] == "Line 1 press" and got["L001"]["active"] is True
    def without_stamp(rows: dict) -> dict:
        return {k: {c: v for c, v in r.items() if c != "updated_at"} for k, r in rows.items()}

    assert without_stamp(locations(sqlite_db)) == without_stamp(got)
    sync = master_data_sync(source_db=sqlite_db.block, target_db=db.block)
    assert (sync["upserted"], sync["deactivated"]) == (0, [])
    again = invoke(str(SHIPPED), "--source-db", sqlite_db.block, "--target-db", db.block)
    assert "0 inserted or updated, 5 unchanged" in again.output


def test_after_loading_the_shipped_csv_a_simulator_peak_breaches_l005(db):
    assert invoke(str(SHIPPED), "--target-db", db.block, "--no-source").exit_code == 0
    start = datetime(2024, 5, 1, 10, tzinfo=UTC)
    db.insert_raw([{"loc_id": loc, "capture_dt": start + timedelta(minutes=m),
                    "temperature": t, "humidity": 55.0, "pcv_temperature": 35.0,
                    "device": "sim", "ingested_at": start}
                   for loc in ("L001", "L005") for m, t in ((0, 19.0), (5, 25.0))])
    summary = hourly_aggregation(start=start, end=start + timedelta(hours=1),
                                 source_db=db.block, target_db=db.block)
    assert (summary["breaches"], summary["alert_events"]) == (1, 1)


def test_a_changed_file_updates_only_its_columns_and_rows(db, tmp_path):
    assert invoke(str(SHIPPED), "--target-db", db.block, "--no-source").exit_code == 0
    edited = tmp_path / "edit.csv"
    edited.write_text("loc_id,temperature_max,active\nL002,28.5,no\nL009,,\n")
    result = invoke(str(edited), "--target-db", db.block, "--no-source")
    assert result.exit_code == 0, result.output
    got = locations(db)
    assert (got["L002"]["temperature_max"], got["L002"]["active"]) == (28.5, False)
    assert got["L002"]["name"] == "Line 2 press"  # a column not in the file is kept
    assert got["L009"]["active"] is True and got["L009"]["name"] is None
    assert got["L001"]["temperature_max"] == 30.0


def test_a_bad_row_is_one_error_line_and_nothing_is_written(db, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("loc_id,humidity_min,humidity_max\nL001,20,80\nL002,90,10\n")
    result = invoke(str(bad), "--target-db", db.block, "--no-source")
    assert result.exit_code != 0
    assert isinstance(result.exception, Exception)
    assert str(result.exception) == ("bad.csv line 3 (loc_id 'L002'): humidity_min 90 is "
                                     "above humidity_max 10")
    assert locations(db) == {}
