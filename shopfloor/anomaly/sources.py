"""Which hourly rows a run judges: the seed's three measures (``temperature_hourly``),
every tag (``tag_hourly``), or both."""

from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, inspect

from shopfloor.anomaly.findings import DetectorParams, Finding, detect
from shopfloor.anomaly.grid import local_indices
from shopfloor.anomaly.store import read_hourly
from shopfloor.anomaly.tag_series import detect_tags, read_tag_hourly, rows_in_window
from shopfloor.anomaly.tag_settings import Settings
from shopfloor.db.schema import Tables

Series = Literal["all", "measures", "tags"]


def find_all(conn: Connection, tables: Tables, tz: ZoneInfo, timezone: str,
             hours: tuple[int, int, int], params: DetectorParams, series: Series = "all",
             settings: Settings | None = None) -> tuple[list[Finding], int, int]:
    """Findings about local hours ``window_first..last`` of ``hours`` = ``(first read,
    window_first, last)``; also the hourly rows read and those inside the window. A
    warehouse without ``tag_hourly`` (made before tag rollups) has no tag series."""
    first, window_first, last = hours
    found: list[Finding] = []
    read = in_window = 0
    if series in ("measures", "all"):
        frame = read_hourly(conn, tables, first, last)
        found += detect(frame, tz, timezone, first, window_first, last, params)
        if len(frame):
            index = local_indices(frame["ymd"], frame["hh"])
            in_window += int(((index >= window_first) & (index <= last)).sum())
        read += len(frame)
    if series in ("tags", "all") and inspect(conn).has_table(tables.tag_hourly.name,
                                                             schema=tables.schema):
        rows = read_tag_hourly(conn, tables, first, last)
        found += detect_tags(rows, tz, timezone, first, window_first, last, params,
                             settings or {})
        in_window += rows_in_window(rows, tz, window_first, last)
        read += len(rows)
    return found, read, in_window
