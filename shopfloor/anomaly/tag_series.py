"""The four detectors on any tag: hourly averages from ``tag_hourly``, one series per tag,
settings per tag or unit (:mod:`shopfloor.anomaly.tag_settings`).

A tag is judged as a location of its own with one measure, ``value`` (the average of its
good numbers in the hour); its gaps are hours without a row in ``tag_hourly`` (nothing
captured) or with fewer than ``min_samples`` points, and hours whose points had no good
number. A finding is stored under the tag's location (its device when it has none) with
``measure`` ``tag:<id>``, the tag's name, device and unit in its detail.

``tag_hourly`` is keyed by UTC hours; they are laid on the zone's local hours, which
is exact in every zone whose offset is whole hours (in a zone off by 30 or 45 minutes a
UTC hour is judged as the local hour it starts in).
"""

from dataclasses import replace
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy import Connection, select

from shopfloor.anomaly.findings import DetectorParams, Finding, detect
from shopfloor.anomaly.grid import local_indices
from shopfloor.anomaly.tag_settings import Settings, params_for
from shopfloor.db.schema import Tables

MEASURES = ("value",)
_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")
_META = ["tag_id", "name", "device", "location", "unit"]


def read_tag_hourly(conn: Connection, tables: Tables, first: int, last: int) -> pd.DataFrame:
    """``tag_hourly`` rows around local hour indices ``first..last`` (a day more on each
    side covers every zone's offset; :func:`detect` drops the hours outside), with each
    tag's name, device, location and unit."""
    h, t = tables.tag_hourly, tables.tags
    lo = _EPOCH + pd.Timedelta(hours=first - 24)
    hi = _EPOCH + pd.Timedelta(hours=last + 25)
    stmt = (select(h.c.tag_id, h.c.period_start, h.c.value_avg, h.c.sample_count,
                   t.c.name, t.c.device, t.c.location, t.c.unit)
            .join(t, t.c.id == h.c.tag_id)
            .where(h.c.period_start >= lo.to_pydatetime(), h.c.period_start < hi.to_pydatetime()))
    cols = ["tag_id", "period_start", "value_avg", "sample_count", "name", "device",
            "location", "unit"]
    return pd.DataFrame(conn.execute(stmt).all(), columns=cols)


def _local_frame(rows: pd.DataFrame, tz: ZoneInfo) -> pd.DataFrame:
    """The detectors' frame: ``loc_id`` ``tag:<id>``, local ``ymd``/``hh``, one row per
    tag and local hour (the first UTC hour of a fall-back's shared local hour)."""
    start = pd.to_datetime(rows["period_start"], utc=True).dt.tz_convert(tz)
    frame = pd.DataFrame({
        "loc_id": "tag:" + rows["tag_id"].astype(str),
        "ymd": start.dt.strftime("%Y%m%d"), "hh": start.dt.strftime("%H"),
        "value_avg": pd.to_numeric(rows["value_avg"], errors="coerce"),
        "sample_count": rows["sample_count"].astype("int64"),
    })
    return frame.drop_duplicates(["loc_id", "ymd", "hh"], keep="first")


def _stored(finding: Finding, tag: pd.Series) -> Finding:
    """A finding on series ``tag:<id>`` as the ``anomaly`` table keeps it."""
    where = str(tag["location"] or tag["device"])[:32]
    detail = {**finding.detail, "tag": tag["name"], "device": tag["device"],
              "unit": tag["unit"], "series": finding.measure}
    return replace(finding, loc_id=where, measure=f"tag:{int(tag['tag_id'])}"[:32],
                   detail=detail)


def detect_tags(rows: pd.DataFrame, tz: ZoneInfo, timezone: str, first: int,
                window_first: int, last: int, base: DetectorParams,
                settings: Settings) -> list[Finding]:
    """Every finding about local hours ``window_first..last`` on the tags of ``rows``
    (:func:`read_tag_hourly`), each tag judged by its settings; tags that share settings
    are judged together (the gaps of a tag that went silent show against the others)."""
    if rows.empty:
        return []
    tags = rows[_META].drop_duplicates("tag_id").set_index("tag_id", drop=False)
    groups: dict[DetectorParams, list[int]] = {}
    for tag in tags.itertuples(index=False):
        p = params_for(settings, base, tag.device, tag.name, tag.unit)
        groups.setdefault(p, []).append(int(tag.tag_id))
    frame = _local_frame(rows, tz)
    found: list[Finding] = []
    for params, ids in groups.items():
        mine = frame[frame["loc_id"].isin([f"tag:{i}" for i in ids])]
        for f in detect(mine, tz, timezone, first, window_first, last, params, MEASURES):
            found.append(_stored(f, tags.loc[int(f.loc_id.removeprefix("tag:"))]))
    return sorted(found, key=lambda f: (f.hour_start, f.kind, f.loc_id, f.measure))


def rows_in_window(rows: pd.DataFrame, tz: ZoneInfo, window_first: int, last: int) -> int:
    """How many of the tags' hourly rows lie in local hours ``window_first..last``."""
    if rows.empty:
        return 0
    frame = _local_frame(rows, tz)
    index = local_indices(frame["ymd"], frame["hh"])
    return int(np.count_nonzero((index >= window_first) & (index <= last)))
