"""The dashboard's queries: one SQLAlchemy Core statement per panel, portable, read-only.

Every function takes an open connection and the :class:`~shopfloor.db.schema.Tables`
and returns a pandas frame with fixed columns (empty when there is nothing, also when an
optional table does not exist yet), so the page only draws. Times come back as aware
UTC; hourly ``ymd``/``hh`` are local to the zone the hourly flow ran with.
"""

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Table, case, exists, func, inspect, literal, select, union_all
from sqlalchemy.sql.expression import ColumnElement

from shopfloor.dashboard.buckets import FIVE_MINUTES, bucket_start, time_bucket
from shopfloor.db.schema import Tables
from shopfloor.tags.quality import GOOD, UNCERTAIN

MEASURES = ("temperature", "humidity", "pcv_temperature")
BACKLOG_STATUSES = ("PENDING", "CLAIMED", "FAILED")
DEVICE_COLUMNS = ["loc_id", "device", "last_reading", "readings"]


def table_exists(conn: Connection, table: Table) -> bool:
    """Whether ``table`` exists in the database ``conn`` is connected to: the anomaly and
    quality tables appear when their flows first run, and a panel says "no data yet"."""
    return inspect(conn).has_table(table.name, schema=table.schema)


def _frame(rows: Sequence[Any], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame([tuple(r) for r in rows], columns=list(columns))


def last_readings(conn: Connection, tables: Tables, now: datetime,
                  lookback: timedelta = timedelta(hours=1)) -> pd.DataFrame:
    """The last reading of every (location, device) heard from in ``lookback``, plus every
    active location not heard from in it (its last reading ever, or none).

    The first part is one GROUP BY over the ``capture_dt`` index range; the second looks
    up each silent location's newest row through the (loc_id, capture_dt) key, so neither
    reads the whole raw table. A device without master data that has been silent for
    longer than ``lookback`` is not listed: keep ``lookback`` at least as long as what
    counts as online. Columns: loc_id, device, last_reading, readings (in the lookback).
    """
    raw, loc = tables.temperature_raw, tables.location
    since = now - lookback
    recent = (select(raw.c.loc_id, raw.c.device, func.max(raw.c.capture_dt),
                     func.count())
              .where(raw.c.capture_dt >= since)
              .group_by(raw.c.loc_id, raw.c.device))
    heard = exists().where(raw.c.loc_id == loc.c.loc_id, raw.c.capture_dt >= since)
    newest = select(raw).where(raw.c.loc_id == loc.c.loc_id) \
        .order_by(raw.c.capture_dt.desc()).limit(1)
    silent = (select(loc.c.loc_id,
                     newest.with_only_columns(raw.c.device).scalar_subquery(),
                     newest.with_only_columns(raw.c.capture_dt).scalar_subquery(),
                     literal(0))
              .where(loc.c.active.is_(True), ~heard))
    rows = conn.execute(union_all(recent, silent)).all()
    df = _frame(rows, DEVICE_COLUMNS)
    df["last_reading"] = pd.to_datetime(df["last_reading"], utc=True)
    return df.sort_values(["loc_id", "device"], na_position="last").reset_index(drop=True)


def locations(conn: Connection, tables: Tables) -> pd.DataFrame:
    """Master data with thresholds: loc_id, name, site, active, ``<measure>_min|max``."""
    loc = tables.location
    cols = ["loc_id", "name", "site", "active",
            *(f"{m}_{b}" for m in MEASURES for b in ("min", "max"))]
    rows = conn.execute(select(*(loc.c[c] for c in cols)).order_by(loc.c.loc_id)).all()
    return _frame(rows, cols)


def hourly(conn: Connection, tables: Tables, loc_ids: Sequence[str], first_ymd: str,
           last_ymd: str) -> pd.DataFrame:
    """The hourly rows of ``loc_ids`` for local days ``first_ymd``..``last_ymd``
    (inclusive), read through the (loc_id, ymd, hh) key."""
    h = tables.temperature_hourly
    cols = ["loc_id", "ymd", "hh", *(f"{m}_{a}" for m in MEASURES for a in ("max", "avg")),
            "sample_count"]
    stmt = (select(*(h.c[c] for c in cols))
            .where(h.c.loc_id.in_(list(loc_ids)), h.c.ymd >= first_ymd, h.c.ymd <= last_ymd)
            .order_by(h.c.loc_id, h.c.ymd, h.c.hh))
    return _frame(conn.execute(stmt).all() if loc_ids else [], cols)


def _weighted_avg(avg: ColumnElement, count: ColumnElement) -> ColumnElement:
    # An hour whose average is NULL (no sample had the measure) counts in neither sum,
    # so it cannot pull the day's average towards zero.
    weight = case((avg.is_not(None), count))
    return func.sum(avg * count) / func.nullif(func.sum(weight), 0)


def daily(conn: Connection, tables: Tables, loc_ids: Sequence[str], first_ymd: str,
          last_ymd: str) -> pd.DataFrame:
    """Local days from the hourly rows, in one GROUP BY: the max of the hourly maxima and
    the average weighted by each hour's sample count (never an average of averages).

    Columns: loc_id, ymd, ``<measure>_max``, ``<measure>_avg``, sample_count, hours.
    """
    h = tables.temperature_hourly
    aggs = []
    for m in MEASURES:
        aggs += [func.max(h.c[f"{m}_max"]).label(f"{m}_max"),
                 _weighted_avg(h.c[f"{m}_avg"], h.c.sample_count).label(f"{m}_avg")]
    stmt = (select(h.c.loc_id, h.c.ymd, *aggs, func.sum(h.c.sample_count), func.count())
            .where(h.c.loc_id.in_(list(loc_ids)), h.c.ymd >= first_ymd, h.c.ymd <= last_ymd)
            .group_by(h.c.loc_id, h.c.ymd)
            .order_by(h.c.loc_id, h.c.ymd))
    cols = ["loc_id", "ymd", *(f"{m}_{a}" for m in MEASURES for a in ("max", "avg")),
            "sample_count", "hours"]
    return _frame(conn.execute(stmt).all() if loc_ids else [], cols)


def five_minute_buckets(conn: Connection, tables: Tables, loc_ids: Sequence[str],
                        start: datetime, end: datetime,
                        width_seconds: int = FIVE_MINUTES) -> pd.DataFrame:
    """Raw readings of ``loc_ids`` in ``[start, end)`` in ``width``-second buckets, by one
    GROUP BY on the database over the (loc_id, capture_dt) key range.

    Columns: loc_id, bucket_start (UTC), readings, ``<measure>_min|avg|max``.
    """
    raw = tables.temperature_raw
    bucket = time_bucket(raw.c.capture_dt, width_seconds)
    aggs = [agg(raw.c[m]) for m in MEASURES for agg in (func.min, func.avg, func.max)]
    stmt = (select(raw.c.loc_id, bucket, func.count(), *aggs)
            .where(raw.c.loc_id.in_(list(loc_ids)), raw.c.capture_dt >= start,
                   raw.c.capture_dt < end)
            .group_by(raw.c.loc_id, bucket)
            .order_by(raw.c.loc_id, bucket))
    cols = ["loc_id", "bucket_start", "readings",
            *(f"{m}_{a}" for m in MEASURES for a in ("min", "avg", "max"))]
    df = _frame(conn.execute(stmt).all() if loc_ids else [], cols)
    df["bucket_start"] = pd.to_datetime(
        [bucket_start(b, width_seconds) for b in df["bucket_start"]], utc=True)
    return df


def anomalies(conn: Connection, tables: Tables, loc_ids: Sequence[str], start: datetime,
              end: datetime) -> pd.DataFrame:
    """Findings of the anomaly detector for ``loc_ids`` with ``hour_start`` in
    ``[start, end)`` (empty while the ``anomaly`` table does not exist)."""
    a = tables.anomaly
    cols = ["kind", "loc_id", "measure", "hour_start", "hours", "score", "detail"]
    rows: Sequence[Any] = []
    if loc_ids and table_exists(conn, a):
        rows = conn.execute(
            select(*(a.c[c] for c in cols))
            .where(a.c.loc_id.in_(list(loc_ids)), a.c.hour_start >= start,
                   a.c.hour_start < end)
            .order_by(a.c.hour_start, a.c.loc_id, a.c.measure)).all()
    df = _frame(rows, cols)
    df["hour_start"] = pd.to_datetime(df["hour_start"], utc=True)
    return df


def quality_over_time(conn: Connection, tables: Tables, since: datetime,
                      width_seconds: int = 3600) -> pd.DataFrame:
    """Mean and worst ``overall`` quality score per flow and ``width``-second bucket of
    ``window_start`` (empty while the ``quality_score`` table does not exist).

    Columns: flow, bucket_start (UTC), batches, rows_in, overall_avg, overall_min.
    """
    q = tables.quality_score
    cols = ["flow", "bucket_start", "batches", "rows_in", "overall_avg", "overall_min"]
    rows: Sequence[Any] = []
    if table_exists(conn, q):
        bucket = time_bucket(q.c.window_start, width_seconds)
        rows = conn.execute(
            select(q.c.flow, bucket, func.count(), func.sum(q.c.rows_in),
                   func.avg(q.c.overall), func.min(q.c.overall))
            .where(q.c.window_start >= since)
            .group_by(q.c.flow, bucket)
            .order_by(q.c.flow, bucket)).all()
    df = _frame(rows, cols)
    df["bucket_start"] = pd.to_datetime(
        [bucket_start(b, width_seconds) for b in df["bucket_start"]], utc=True)
    return df


def quarantine_counts(conn: Connection, tables: Tables, since: datetime) -> pd.DataFrame:
    """How many rows each source quarantined since ``since``: source, rows."""
    q = tables.quarantine
    stmt = (select(q.c.source, func.count()).where(q.c.quarantined_at >= since)
            .group_by(q.c.source).order_by(q.c.source))
    return _frame(conn.execute(stmt).all(), ["source", "rows"])


def quarantine_rows(conn: Connection, tables: Tables, since: datetime,
                    limit: int = 500) -> pd.DataFrame:
    """The newest ``limit`` quarantined rows since ``since``, their reasons in one line.

    Columns: id, quarantined_at, source, reasons, record, run_id.
    """
    q = tables.quarantine
    stmt = (select(q.c.id, q.c.quarantined_at, q.c.source, q.c.reasons, q.c.record,
                   q.c.run_id)
            .where(q.c.quarantined_at >= since)
            .order_by(q.c.quarantined_at.desc(), q.c.id.desc()).limit(limit))
    df = _frame(conn.execute(stmt).all(),
                ["id", "quarantined_at", "source", "reasons", "record", "run_id"])
    df["quarantined_at"] = pd.to_datetime(df["quarantined_at"], utc=True)
    df["reasons"] = [reasons_line(r) for r in df["reasons"]]
    return df


def reasons_line(reasons_json: str | None) -> str:
    """``[{"column": "temperature", "check": "not_nullable", "value": "nan"}]`` ->
    ``temperature: not_nullable (nan)``; text that is not that shape is shown as it is."""
    try:
        reasons = json.loads(reasons_json or "[]")
        parts = []
        for r in reasons:
            where = f"{r['column']}: " if r.get("column") else ""
            value = f" ({r['value']})" if r.get("value") is not None else ""
            parts.append(f"{where}{r['check']}{value}")
        return "; ".join(parts)
    except (ValueError, TypeError, KeyError, AttributeError):
        return str(reasons_json)


def compaction_backlog(conn: Connection, tables: Tables) -> pd.DataFrame:
    """Objects still to compact per district, by status, through the (distrik, status)
    index: district, PENDING, CLAIMED, FAILED, backlog (their sum)."""
    s = tables.s3_object
    stmt = (select(s.c.distrik, s.c.compression_status, func.count())
            .where(s.c.compression_status.in_(BACKLOG_STATUSES))
            .group_by(s.c.distrik, s.c.compression_status))
    long = _frame(conn.execute(stmt).all(), ["district", "status", "objects"])
    if long.empty:
        return pd.DataFrame(columns=["district", *BACKLOG_STATUSES, "backlog"])
    wide = (long.pivot_table(index="district", columns="status", values="objects",
                             aggfunc="sum", fill_value=0)
            .reindex(columns=list(BACKLOG_STATUSES), fill_value=0))
    wide["backlog"] = wide.sum(axis=1)
    wide.columns.name = None
    return wide.reset_index().astype({c: "int64" for c in (*BACKLOG_STATUSES, "backlog")})


FORWARD_BACKLOG_COLUMNS = ["collector", "sink", "backlog_samples", "oldest_sample_at",
                           "dropped_samples", "buffer_fill_pct", "reported_at"]


def forward_backlog(conn: Connection, tables: Tables) -> pd.DataFrame:
    """What each collector's store-and-forward buffer still holds per sink, as its
    forwarders last reported it (``collector_backlog``; empty while the table does not
    exist). Columns: collector, sink, backlog_samples, oldest_sample_at (UTC, NaT when
    nothing waits), dropped_samples, buffer_fill_pct, reported_at (UTC)."""
    b = tables.collector_backlog
    rows: Sequence[Any] = []
    if table_exists(conn, b):
        rows = conn.execute(select(*(b.c[c] for c in FORWARD_BACKLOG_COLUMNS))
                            .order_by(b.c.collector, b.c.sink)).all()
    df = _frame(rows, FORWARD_BACKLOG_COLUMNS)
    for col in ("oldest_sample_at", "reported_at"):
        df[col] = pd.to_datetime(df[col], utc=True)
    return df


# ---------------------------------------------------------------- tags (docs/tags.md)
TAG_COLUMNS = ["tag_id", "name", "device", "location", "unit", "data_type", "description"]
TREND_COLUMNS = ["tag_id", "bucket_start", "points", "values", "value_min", "value_avg",
                 "value_max", "good", "uncertain", "bad"]
MARK_COLUMNS = ["tag_id", "bucket_start", "quality", "reason", "points"]
CHANGE_COLUMNS = ["tag_id", "ts", "text_value", "quality", "reason"]
TAG_QUALITY_COLUMNS = ["tag_id", "name", "device", "unit", "data_type", "points", "good",
                       "uncertain", "bad", "latest_ts", "latest_value", "latest_text",
                       "latest_quality", "latest_reason"]


def _not_good_counts(quality: ColumnElement) -> list[ColumnElement]:
    # OPC's ranges, not only the three codes capture writes: 192-255 good, 64-191
    # uncertain, 0-63 bad, so a source's sub-status codes count in the right class.
    # Good is the rest (points - uncertain - bad, in Python): one CASE fewer per row.
    return [func.coalesce(func.sum(case((cond, 1), else_=0)), 0) for cond in (
        (quality >= UNCERTAIN) & (quality < GOOD), quality < UNCERTAIN)]


def _with_good(df: pd.DataFrame) -> pd.DataFrame:
    df.insert(df.columns.get_loc("uncertain"), "good",
              (df["points"] - df["uncertain"] - df["bad"]).astype("int64"))
    return df


def tags(conn: Connection, tables: Tables, locations: Sequence[str | None] = (),
         devices: Sequence[str] = (), units: Sequence[str | None] = ()) -> pd.DataFrame:
    """The tag registry, filtered by location, device and unit (an empty filter is no
    filter; ``None`` in ``locations``/``units`` matches tags without one), by location,
    device and name. Columns: tag_id, name, device, location, unit, data_type,
    description (empty while the ``tags`` table does not exist)."""
    t = tables.tags
    if not table_exists(conn, t):
        return _frame([], TAG_COLUMNS)
    stmt = select(t.c.id, *(t.c[c] for c in TAG_COLUMNS[1:]))
    for column, wanted in ((t.c.location, locations), (t.c.device, devices),
                           (t.c.unit, units)):
        if wanted:
            named = [w for w in wanted if w is not None]
            cond = column.in_(named)
            stmt = stmt.where(cond | column.is_(None) if None in wanted else cond)
    rows = conn.execute(stmt.order_by(t.c.location, t.c.device, t.c.name)).all()
    return _frame(rows, TAG_COLUMNS)


def tag_trend(conn: Connection, tables: Tables, tag_ids: Sequence[int], start: datetime,
              end: datetime, width_seconds: int) -> pd.DataFrame:
    """Samples of ``tag_ids`` in ``[start, end)`` in ``width``-second buckets, by one
    GROUP BY on the database over the (tag_id, ts) key range: points, points with a
    number (``values``), min/avg/max of the numbers (every point with a value, whatever
    its quality: a bad point is drawn where it was and marked, not hidden), and the
    good/uncertain/bad counts. Buckets without a point are absent.

    Columns: tag_id, bucket_start (UTC), points, values, value_min, value_avg,
    value_max, good, uncertain, bad.
    """
    s = tables.tag_samples
    bucket = time_bucket(s.c.ts, width_seconds)
    stmt = (select(s.c.tag_id, bucket, func.count(), func.count(s.c.value),
                   func.min(s.c.value), func.avg(s.c.value), func.max(s.c.value),
                   *_not_good_counts(s.c.quality))
            .where(s.c.tag_id.in_([int(i) for i in tag_ids]), s.c.ts >= start, s.c.ts < end)
            .group_by(s.c.tag_id, bucket)
            .order_by(s.c.tag_id, bucket))
    df = _with_good(_frame(conn.execute(stmt).all() if tag_ids else [],
                           [c for c in TREND_COLUMNS if c != "good"]))
    df["bucket_start"] = pd.to_datetime(
        [bucket_start(b, width_seconds) for b in df["bucket_start"]], utc=True)
    for col in ("value_min", "value_avg", "value_max"):
        df[col] = df[col].astype("float64")
    return df


def tag_marks(conn: Connection, tables: Tables, tag_ids: Sequence[int], start: datetime,
              end: datetime, width_seconds: int) -> pd.DataFrame:
    """The points of ``tag_ids`` in ``[start, end)`` that are not good, counted per
    bucket (the same buckets as :func:`tag_trend`), quality code and reason: what the
    trend's marks tell. Columns: tag_id, bucket_start (UTC), quality, reason, points."""
    s = tables.tag_samples
    bucket = time_bucket(s.c.ts, width_seconds)
    stmt = (select(s.c.tag_id, bucket, s.c.quality, s.c.reason, func.count())
            .where(s.c.tag_id.in_([int(i) for i in tag_ids]), s.c.ts >= start,
                   s.c.ts < end, s.c.quality < GOOD)
            .group_by(s.c.tag_id, bucket, s.c.quality, s.c.reason)
            .order_by(s.c.tag_id, bucket, s.c.quality, s.c.reason))
    df = _frame(conn.execute(stmt).all() if tag_ids else [], MARK_COLUMNS)
    df["bucket_start"] = pd.to_datetime(
        [bucket_start(b, width_seconds) for b in df["bucket_start"]], utc=True)
    return df


def tag_changes(conn: Connection, tables: Tables, tag_ids: Sequence[int], start: datetime,
                end: datetime, limit: int = 200) -> pd.DataFrame:
    """The newest ``limit`` changes of text tags in ``[start, end)``: each tag's first
    point in the range and every point whose text differs from the one before it
    (``LAG`` over the (tag_id, ts) key; a point without text after one with text is a
    change too). Columns: tag_id, ts (UTC), text_value, quality, reason."""
    s = tables.tag_samples
    order = {"partition_by": s.c.tag_id, "order_by": s.c.ts}
    inner = (select(s.c.tag_id, s.c.ts, s.c.text_value, s.c.quality, s.c.reason,
                    func.lag(s.c.text_value).over(**order).label("previous"),
                    func.row_number().over(**order).label("n"))
             .where(s.c.tag_id.in_([int(i) for i in tag_ids]), s.c.ts >= start,
                    s.c.ts < end)
             .subquery())
    stmt = (select(*(inner.c[c] for c in CHANGE_COLUMNS))
            .where((inner.c.n == 1) | inner.c.text_value.is_distinct_from(inner.c.previous))
            .order_by(inner.c.ts.desc(), inner.c.tag_id).limit(limit))
    df = _frame(conn.execute(stmt).all() if tag_ids else [], CHANGE_COLUMNS)
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    return df


def tag_quality(conn: Connection, tables: Tables, location: str | None, start: datetime,
                end: datetime) -> pd.DataFrame:
    """Every tag of ``location`` (``None``: tags without one) with its points in
    ``[start, end)`` counted by quality, and its latest point before ``end`` (however
    old). Two statements: the tags and their latest points, one row per tag with a key
    lookup each; then the counts, one GROUP BY over the samples of those tag ids (bound
    values, so PostgreSQL judges from its statistics of ``tag_samples`` how much of the
    table they are: key ranges for a short range, one sequential pass for a month of
    every tag). A join to ``tags`` instead let it, misjudging a small ``tags`` table,
    scan the samples once per tag. A tag without points in the range has zero counts.

    Columns: tag_id, name, device, unit, data_type, points, good, uncertain, bad,
    latest_ts (UTC), latest_value, latest_text, latest_quality, latest_reason.
    """
    t, s = tables.tags, tables.tag_samples
    if not table_exists(conn, t):
        return _frame([], TAG_QUALITY_COLUMNS)
    here = t.c.location.is_(None) if location is None else t.c.location == location
    newest = select(s).where(s.c.tag_id == t.c.id, s.c.ts < end) \
        .order_by(s.c.ts.desc()).limit(1)
    latest = [newest.with_only_columns(s.c[c]).scalar_subquery()
              for c in ("ts", "value", "text_value", "quality", "reason")]
    rows = conn.execute(
        select(t.c.id, t.c.name, t.c.device, t.c.unit, t.c.data_type, *latest)
        .where(here).order_by(t.c.device, t.c.name)).all()
    ids = [int(r[0]) for r in rows]
    counted = conn.execute(
        select(s.c.tag_id, func.count(), *_not_good_counts(s.c.quality))
        .where(s.c.tag_id.in_(ids), s.c.ts >= start, s.c.ts < end)
        .group_by(s.c.tag_id)).all() if ids else []
    counts = {int(r[0]): tuple(int(x) for x in r[1:]) for r in counted}
    df = _with_good(_frame([(*r[:5], *counts.get(int(r[0]), (0, 0, 0)), *r[5:])
                            for r in rows],
                           [c for c in TAG_QUALITY_COLUMNS if c != "good"]))
    df["latest_ts"] = pd.to_datetime(df["latest_ts"], utc=True)
    df["latest_value"] = df["latest_value"].astype("float64")
    return df
