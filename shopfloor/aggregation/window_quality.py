"""What every aggregated window adds in its write transaction: the daily rows of the
days it touched and its ``quality_score`` row.

Called by both write paths (:func:`.transfer.write_window` and :mod:`.in_database`)
after the window validated, inside the transaction that wrote its hourly rows, so the
hourly rows, the days and the score commit or roll back together.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from shopfloor.aggregation.daily import refresh_days, window_days
from shopfloor.aggregation.windows import Window
from shopfloor.db.schema import Tables
from shopfloor.quality import BatchCounts, Subject, quality_row, write_quality

FLOW = "hourly-aggregation"


def window_quality_row(window: Window, bounds: tuple[datetime, datetime], raw_rows: int,
                       groups: int, locations: int, run_id: str | None,
                       now: datetime) -> dict[str, Any]:
    """The window's ``quality_score`` row.

    Every raw row of the window goes into a group (validated: the sample counts add
    up), so rows in = valid = the raw rows, and validity and uniqueness are 1.
    Completeness is over hourly groups: each location seen in the window should have a
    group in every local hour of it (``expected = locations x hours``); a gap lowers it.
    Timeliness is judged at capture (per device and run), not here: 1.0.
    """
    expected = locations * window.hours
    row = quality_row(Subject(FLOW, window.label(), bounds[0], bounds[1]),
                      BatchCounts(rows_in=groups, rows_valid=groups, expected=expected),
                      run_id, now)
    # rows_in/rows_valid count the raw rows (what the window read); the completeness
    # above was computed over hourly groups against the expected groups.
    row.update(rows_in=raw_rows, rows_valid=raw_rows)
    return row


# Up to this many locations, the daily refresh names them (the hourly key's leading
# column: an index range per location instead of a scan of every location's days);
# more would outgrow bind-parameter limits (SQL Server: 2,100).
MAX_NAMED_LOCATIONS = 1000


def finish_window(conn: Connection, tables: Tables, window: Window,
                  bounds: tuple[datetime, datetime], raw_rows: int, groups: int,
                  locations: Sequence[str], run_id: str | None, now: datetime,
                  ) -> dict[str, Any]:
    """Refresh the window's days in ``temperature_daily`` for the ``locations`` that have
    groups in it (the others' hourly rows did not change) and store its quality row;
    returns the quality row (for the run's table artifact)."""
    named = sorted(locations) if len(locations) <= MAX_NAMED_LOCATIONS else window.loc_ids
    days = refresh_days(conn, tables, window_days(window), named, now)
    row = window_quality_row(window, bounds, raw_rows, groups, len(locations), run_id, now)
    write_quality(conn, tables, [row])
    return dict(row, days=days)
