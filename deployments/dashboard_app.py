"""The plant dashboard page, served by Streamlit (`shopfloor dashboard` starts it).

Presentation only: every number comes from :mod:`shopfloor.dashboard.queries` through
the same database blocks the flows use. Arguments follow ``--`` on the streamlit command
line: ``--warehouse-db``, ``--metadata-db``, ``--timezone``.
"""

import argparse
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import altair as alt
import pandas as pd
import streamlit as st
from sqlalchemy import Engine

from shopfloor.dashboard import queries as q
from shopfloor.dashboard.views import (
    device_status,
    forward_backlog_status,
    headline,
    hour_of,
    local_day_start,
    local_days,
    local_ymd,
    quality_class,
    tag_label,
    trend_marks,
    trend_summary,
    trend_width,
    wall_clock,
    width_text,
)
from shopfloor.db.schema import Tables, configured_tables
from shopfloor.errors import ShopfloorError

NO_DATA = "no data yet"
LOOKBACK = timedelta(hours=1)
NO_TAGS = "no tags yet (capture registers a device's tags; `shopfloor tags import`)"
TREND_RANGES = {"1 hour": timedelta(hours=1), "6 hours": timedelta(hours=6),
                "24 hours": timedelta(days=1), "7 days": timedelta(days=7),
                "30 days": timedelta(days=30)}
NONE = "(none)"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dashboard_app")
    parser.add_argument("--warehouse-db", default="shopfloor-warehouse-db")
    parser.add_argument("--metadata-db", default="shopfloor-metadata-db")
    parser.add_argument("--timezone", default="UTC")
    return parser.parse_known_args(argv)[0]


@st.cache_resource(show_spinner="Loading the database blocks ...")
def engines(warehouse_db: str, metadata_db: str) -> tuple[Engine, Engine]:
    """One engine per block for the life of the server (blocks load once, not per view)."""
    from tasks import runtime  # loads Prefect: only once, inside the cache

    warehouse = runtime.engine(warehouse_db)
    return warehouse, runtime.engine(metadata_db) if metadata_db != warehouse_db else warehouse


def export(df: pd.DataFrame, name: str) -> None:
    """A CSV download of exactly what the panel shows."""
    st.download_button(f"CSV: {name}", df.to_csv(index=False).encode(), f"{name}.csv",
                       "text/csv", key=f"csv-{name}")


def sidebar(known: list[str]) -> dict:
    return {
        "loc_ids": st.sidebar.multiselect("Locations", known, default=known[:3]),
        "measure": st.sidebar.selectbox("Measure", q.MEASURES),
        "days": st.sidebar.slider("Daily chart: days", 1, 366, 30),
        "hourly_days": st.sidebar.slider("Hourly chart: days", 1, 31, 3),
        "bucket_hours": st.sidebar.slider("5-minute buckets: hours", 1, 48, 6),
        "quarantine_days": st.sidebar.slider("Quarantine and quality: days", 1, 90, 7),
    }


def thresholds_layer(locs: pd.DataFrame, loc_ids: list[str], measure: str) -> alt.Chart:
    lim = locs[locs["loc_id"].isin(loc_ids)].melt(
        id_vars="loc_id", value_vars=[f"{measure}_min", f"{measure}_max"],
        var_name="threshold", value_name="value").dropna()
    return alt.Chart(lim).mark_rule(strokeDash=[6, 3]).encode(
        y="value:Q", color="loc_id:N", tooltip=["loc_id", "threshold", "value"])


def _time_axis(x: str) -> alt.X:
    # Days are whole dates on the axis, hours are clock times.
    if x == "day":
        return alt.X("day:T", timeUnit="yearmonthdate", title="day",
                     axis=alt.Axis(format="%b %d", tickCount="day"))
    return alt.X(f"{x}:T", title=x)


def anomaly_layer(marks: pd.DataFrame, x: str) -> alt.Chart | None:
    if marks.empty:
        return None
    return alt.Chart(marks).mark_rule(color="black", strokeWidth=2, strokeDash=[2, 2]).encode(
        x=_time_axis(x), tooltip=["loc_id", "kind", "measure", "score", x])


def series_chart(df: pd.DataFrame, x: str, measure: str, limits: alt.Chart,
                 marks: alt.Chart | None) -> alt.LayerChart:
    long = df.melt(id_vars=["loc_id", x], value_vars=[f"{measure}_max", f"{measure}_avg"],
                   var_name="series", value_name="value")
    lines = alt.Chart(long).mark_line(point=len(df) < 60).encode(
        x=_time_axis(x), y=alt.Y("value:Q", title=measure), color="loc_id:N",
        strokeDash="series:N", tooltip=["loc_id", "series", "value", x])
    layers = [lines, limits] if marks is None else [lines, limits, marks]
    return alt.layer(*layers).properties(height=280)


def devices_panel(status: pd.DataFrame) -> None:
    st.subheader("Devices")
    if status.empty:
        st.info(NO_DATA)
        return
    shown = status[["loc_id", "device", "online", "last_reading", "age", "age_bucket",
                    "readings"]]
    st.dataframe(shown, hide_index=True, width="stretch")
    export(shown, "devices")


def location_panels(conn, tables: Tables, v: dict, locs: pd.DataFrame, tz: ZoneInfo,
                    now: datetime) -> None:
    measure, loc_ids = v["measure"], v["loc_ids"]
    first, last = local_days(now, tz, v["days"])
    days = q.daily(conn, tables, loc_ids, first, last)
    anomalies = q.anomalies(conn, tables, loc_ids, local_day_start(first, tz), now)
    anomalies = anomalies[anomalies["measure"] == measure]
    anomalies = anomalies.assign(hour=wall_clock(anomalies["hour_start"], tz),
                                 day=pd.to_datetime(local_ymd(anomalies["hour_start"], tz)))
    limits = thresholds_layer(locs, loc_ids, measure)
    st.subheader(f"Daily {measure} (last {v['days']} days, {tz.key})")
    if days.empty:
        st.info(NO_DATA)
    else:
        latest = days.sort_values("ymd").groupby("loc_id").tail(1)
        cols = st.columns(max(len(latest), 1))
        for col, row in zip(cols, latest.itertuples(), strict=False):
            col.metric(f"Daily max {row.loc_id} {row.ymd}",
                       _number(getattr(row, f"{measure}_max")))
        st.altair_chart(series_chart(days.assign(day=pd.to_datetime(days["ymd"])), "day",
                                     measure, limits, anomaly_layer(anomalies, "day")),
                        width="stretch")
        export(days, "daily")
    hour_first, _ = local_days(now, tz, v["hourly_days"])
    hours = q.hourly(conn, tables, loc_ids, hour_first, last)
    st.subheader(f"Hourly {measure} (last {v['hourly_days']} days)")
    if hours.empty:
        st.info(NO_DATA)
    else:
        hours = hours.assign(hour=hour_of(hours["ymd"], hours["hh"]))
        marks = anomalies[anomalies["hour"] >= hours["hour"].min()]
        st.altair_chart(series_chart(hours, "hour", measure, limits,
                                     anomaly_layer(marks, "hour")), width="stretch")
        export(hours.drop(columns="hour"), "hourly")
    st.subheader("Anomalies")
    if anomalies.empty:
        st.info(NO_DATA)
    else:
        shown = anomalies.drop(columns=["hour", "day"])
        st.dataframe(shown, hide_index=True, width="stretch")
        export(shown, "anomalies")


def buckets_panel(conn, tables: Tables, v: dict, tz: ZoneInfo, now: datetime) -> None:
    st.subheader(f"5-minute buckets from raw (last {v['bucket_hours']} h)")
    start = now - timedelta(hours=v["bucket_hours"])
    df = q.five_minute_buckets(conn, tables, v["loc_ids"], start, now)
    if df.empty:
        st.info(NO_DATA)
        return
    m = v["measure"]
    chart = df.assign(time=wall_clock(df["bucket_start"], tz))
    band = alt.Chart(chart).mark_area(opacity=0.25).encode(
        x="time:T", y=alt.Y(f"{m}_min:Q", title=m), y2=f"{m}_max:Q", color="loc_id:N")
    line = alt.Chart(chart).mark_line(point=True).encode(
        x="time:T", y=f"{m}_avg:Q", color="loc_id:N",
        tooltip=["loc_id", "time", "readings", f"{m}_avg"])
    st.altair_chart(alt.layer(band, line).properties(height=240), width="stretch")
    export(df, "five_minute_buckets")


def quality_panel(conn, tables: Tables, since: datetime, tz: ZoneInfo) -> None:
    st.subheader("Quality score (overall, hourly mean per flow)")
    df = q.quality_over_time(conn, tables, since)
    if df.empty:
        st.info(NO_DATA)
        return
    chart = df.assign(time=wall_clock(df["bucket_start"], tz))
    st.altair_chart(alt.Chart(chart).mark_line(point=True).encode(
        x="time:T", y=alt.Y("overall_avg:Q", scale=alt.Scale(domain=[0, 1])),
        color="flow:N", tooltip=["flow", "time", "batches", "overall_avg", "overall_min"]),
        width="stretch")
    export(df, "quality")


def quarantine_panel(frames: list[tuple[pd.DataFrame, pd.DataFrame]], days: int) -> None:
    st.subheader(f"Quarantine (last {days} days)")
    counts = pd.concat([c for c, _ in frames]).groupby("source", as_index=False)["rows"].sum()
    rows = pd.concat([r for _, r in frames]).sort_values("quarantined_at", ascending=False)
    if counts.empty:
        st.info(NO_DATA)
        return
    cols = st.columns(min(len(counts), 4))
    for i, row in enumerate(counts.itertuples()):
        cols[i % len(cols)].metric(f"Quarantined {row.source}", int(row.rows))
    st.dataframe(rows, hide_index=True, width="stretch")
    export(rows, "quarantine")


def backlog_panel(backlog: pd.DataFrame) -> None:
    st.subheader("Compaction backlog per district")
    if backlog.empty:
        st.info("no backlog (no object PENDING, CLAIMED or FAILED)")
        return
    cols = st.columns(min(len(backlog), 6))
    for i, row in enumerate(backlog.itertuples()):
        cols[i % len(cols)].metric(f"Backlog {row.district}", int(row.backlog),
                                   help=f"pending {row.PENDING}, claimed {row.CLAIMED}, "
                                        f"failed {row.FAILED}")
    st.bar_chart(backlog.set_index("district")[list(q.BACKLOG_STATUSES)])
    export(backlog, "compaction_backlog")


def forward_panel(backlog: pd.DataFrame) -> None:
    st.subheader("Store and forward: backlog per collector and sink")
    if backlog.empty:
        st.info("no report yet (a capture run with store and forward reports its "
                "collector's backlog to the warehouse)")
        return
    cols = st.columns(min(len(backlog), 6))
    for i, row in enumerate(backlog.itertuples()):
        cols[i % len(cols)].metric(
            f"Forward backlog {row.collector} {row.sink}", int(row.backlog_samples),
            help=f"oldest waiting sample {row.oldest_age}; buffer {row.buffer_fill_pct:.1f} % "
                 f"full, {row.dropped_samples} dropped; reported {row.reported}")
    shown = backlog[["collector", "sink", "backlog_samples", "oldest_sample_at", "oldest_age",
                     "dropped_samples", "buffer_fill_pct", "reported_at", "reported"]]
    st.dataframe(shown, hide_index=True, width="stretch")
    export(shown, "forward_backlog")


def tags_section(conn, tables: Tables, tz: ZoneInfo, now: datetime) -> None:
    """The tag picker (location, devices, units, tags), the picked tags' trends or
    changes, and the quality of every tag of the location (docs/dashboard.md)."""
    st.header("Tags")
    registry = q.tags(conn, tables)
    if registry.empty:
        st.info(NO_TAGS)
        return
    cols = st.columns(4)
    locations = sorted({_option(x) for x in registry["location"]})
    location = cols[0].selectbox("Tag location", locations)
    here = registry[registry["location"].map(_option) == location]
    devices = cols[1].multiselect("Tag devices", sorted(set(here["device"])),
                                  placeholder="all devices")
    units = cols[2].multiselect("Tag units", sorted({_option(x) for x in here["unit"]}),
                                placeholder="all units")
    span = TREND_RANGES[cols[3].selectbox("Tag range", list(TREND_RANGES), index=2)]
    loc = None if location == NONE else location
    found = q.tags(conn, tables, [loc], devices, [None if u == NONE else u for u in units])
    labels = {int(r.tag_id): tag_label(r.name, r.device, r.unit) for r in found.itertuples()}
    picked = st.multiselect(f"Tags ({len(labels)} found)", list(labels),
                            format_func=labels.__getitem__, placeholder="pick tags to trend")
    start = now - span
    quality = q.tag_quality(conn, tables, loc, start, now)
    if picked:
        chosen = found[found["tag_id"].isin(picked)]
        text = chosen["data_type"] == "string"
        trend_panel(conn, tables, chosen[~text], quality, labels, start, now, tz)
        changes_panel(conn, tables, chosen[text], quality, labels, start, now, tz)
    quality_per_tag_panel(quality, location, span, tz)


def _option(value: str | None) -> str:
    return NONE if value is None or pd.isna(value) else str(value)


def trend_panel(conn, tables: Tables, chosen: pd.DataFrame, quality: pd.DataFrame,
                labels: dict[int, str], start: datetime, now: datetime, tz: ZoneInfo) -> None:
    if chosen.empty:
        return
    ids = [int(i) for i in chosen["tag_id"]]
    width = trend_width((now - start).total_seconds())
    st.subheader(f"Trend ({width_text(width)} buckets: min/max band, average line, "
                 "marks where points are not good)")
    trend = q.tag_trend(conn, tables, ids, start, now, width)
    marks = q.tag_marks(conn, tables, ids, start, now, width)
    latest = quality.set_index("tag_id")
    summary = trend_summary(trend).set_index("tag_id")
    for tag_id in ids:
        cols = st.columns(4)
        have = tag_id in summary.index
        latest_value = latest["latest_value"].get(tag_id) if tag_id in latest.index else None
        cols[0].metric(f"{labels[tag_id]} latest", _number(latest_value),
                       help=_latest_help(latest, tag_id, tz))
        cols[1].metric(f"{labels[tag_id]} min", _number(summary.at[tag_id, "value_min"]
                                                        if have else None))
        cols[2].metric(f"{labels[tag_id]} max", _number(summary.at[tag_id, "value_max"]
                                                        if have else None))
        cols[3].metric(f"{labels[tag_id]} not good",
                       int(summary.at[tag_id, "not_good"]) if have else 0,
                       help="uncertain and bad points in the range")
    if trend.empty:
        st.info(NO_DATA)
        return
    shown = trend_marks(trend, marks)
    shown.insert(1, "tag", shown["tag_id"].map(labels))
    units = chosen.set_index("tag_id")["unit"].map(_option)
    chart = shown.assign(time=wall_clock(shown["bucket_start"], tz),
                         unit=shown["tag_id"].map(units))
    for unit, part in chart.groupby("unit", sort=True):
        # A keyed container names the chart in the page (the browser test finds it so).
        with st.container(key=f"tag-trend-{unit}"):
            st.altair_chart(trend_chart(part, unit), width="stretch")
    table = shown.drop(columns=["tag_id", "worst"])
    st.dataframe(table, hide_index=True, width="stretch")
    export(table, "tag_trend")


def trend_chart(df: pd.DataFrame, unit: str) -> alt.LayerChart:
    x = alt.X("time:T", title="time")
    band = alt.Chart(df).mark_area(opacity=0.25).encode(
        x=x, y=alt.Y("value_min:Q", title=unit), y2="value_max:Q", color="tag:N")
    line = alt.Chart(df).mark_line(point=len(df) < 60).encode(
        x=x, y="value_avg:Q", color="tag:N",
        tooltip=["tag", "time", "points", "value_min", "value_avg", "value_max"])
    bad = df[df["worst"] != "good"]
    marks = alt.Chart(bad).mark_point(size=90, filled=True, shape="diamond").encode(
        x=x, y="value_max:Q",
        color=alt.Color("worst:N", title="quality",
                        scale=alt.Scale(domain=["uncertain", "bad"],
                                        range=["#f0a30a", "#d62728"])),
        tooltip=["tag", "time", "points", "uncertain", "bad", "reasons"])
    # Band and line share the tags' colours (one legend); the marks have their own.
    return alt.layer(alt.layer(band, line), marks).resolve_scale(
        color="independent").properties(height=280)


def changes_panel(conn, tables: Tables, chosen: pd.DataFrame, quality: pd.DataFrame,
                  labels: dict[int, str], start: datetime, now: datetime,
                  tz: ZoneInfo) -> None:
    if chosen.empty:
        return
    ids = [int(i) for i in chosen["tag_id"]]
    st.subheader("Text tags: latest value and changes (newest first)")
    latest = quality.set_index("tag_id")
    cols = st.columns(min(len(ids), 4))
    for i, tag_id in enumerate(ids):
        text = latest["latest_text"].get(tag_id) if tag_id in latest.index else None
        cols[i % len(cols)].metric(f"{labels[tag_id]} latest",
                                   "-" if text is None or pd.isna(text) else str(text),
                                   help=_latest_help(latest, tag_id, tz))
    changes = q.tag_changes(conn, tables, ids, start, now)
    if changes.empty:
        st.info(NO_DATA)
        return
    shown = changes.assign(tag=changes["tag_id"].map(labels),
                           time=wall_clock(changes["ts"], tz),
                           quality=[quality_class(c) for c in changes["quality"]])
    shown = shown[["tag", "time", "text_value", "quality", "reason"]]
    st.dataframe(shown, hide_index=True, width="stretch")
    export(shown, "tag_changes")


def _latest_help(latest: pd.DataFrame, tag_id: int, tz: ZoneInfo) -> str | None:
    if tag_id not in latest.index or pd.isna(latest.at[tag_id, "latest_ts"]):
        return "no point yet"
    row = latest.loc[tag_id]
    reason = f" ({row['latest_reason']})" if isinstance(row["latest_reason"], str) else ""
    return (f"{row['latest_ts'].tz_convert(tz):%Y-%m-%d %H:%M:%S %Z}, "
            f"{quality_class(row['latest_quality'])}{reason}")


def quality_per_tag_panel(quality: pd.DataFrame, location: str, span: timedelta,
                          tz: ZoneInfo) -> None:
    st.subheader(f"Quality per tag at {location} (last {_span_text(span)})")
    if quality.empty:
        st.info(NO_DATA)
        return
    shown = quality.assign(
        latest_at=wall_clock(quality["latest_ts"], tz),
        latest=[t if isinstance(t, str) else "-" if pd.isna(v) else f"{v:.6g}" for t, v in
                zip(quality["latest_text"], quality["latest_value"], strict=True)],
        latest_quality=[quality_class(c) for c in quality["latest_quality"]])
    shown = shown[["name", "device", "unit", "points", "good", "uncertain", "bad", "latest",
                   "latest_at", "latest_quality", "latest_reason"]]
    st.dataframe(shown, hide_index=True, width="stretch")
    export(shown, "tag_quality")


def _span_text(span: timedelta) -> str:
    return next(k for k, v in TREND_RANGES.items() if v == span)


def _number(value: float | None) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.2f}"


def page(args: argparse.Namespace) -> None:
    st.set_page_config(page_title="shopfloor: plant dashboard", layout="wide")
    st.title("Plant dashboard")
    tz = ZoneInfo(args.timezone)
    try:
        warehouse, metadata = engines(args.warehouse_db, args.metadata_db)
    except ShopfloorError as exc:
        st.error(str(exc))
        st.stop()
    tables, now = configured_tables(), datetime.now(UTC)
    st.caption(f"warehouse block {args.warehouse_db}, metadata block {args.metadata_db}, "
               f"time zone {tz.key}; as of {now.astimezone(tz):%Y-%m-%d %H:%M:%S %Z}")
    st.sidebar.header("View")
    online = timedelta(minutes=st.sidebar.number_input("Online if heard from within (min)",
                                                       1, 1440, 15))
    with warehouse.connect() as conn:
        locs = q.locations(conn, tables)
        # Scan only as far back as "online" reaches (at least an hour); every active
        # location heard from earlier still shows, found through its key.
        devices = q.last_readings(conn, tables, now, lookback=max(online, LOOKBACK))
    known = sorted(set(locs["loc_id"]) | set(devices["loc_id"]))
    v = sidebar(known)
    status = device_status(devices, now, online)
    since = now - timedelta(days=v["quarantine_days"])
    with warehouse.connect() as conn:
        quarantine = [(q.quarantine_counts(conn, tables, since),
                       q.quarantine_rows(conn, tables, since))]
        forward = forward_backlog_status(q.forward_backlog(conn, tables), now)
    with metadata.connect() as conn:
        backlog = q.compaction_backlog(conn, tables)
        if metadata is not warehouse:  # compaction quarantines into the metadata db
            quarantine.append((q.quarantine_counts(conn, tables, since),
                               q.quarantine_rows(conn, tables, since)))
    head = headline(status)
    cols = st.columns(6)
    cols[0].metric("Devices online", head.online)
    cols[1].metric("Devices known", head.known)
    cols[2].metric("Newest reading age", head.newest_age_bucket)
    cols[3].metric("Quarantined", int(sum(c["rows"].sum() for c, _ in quarantine)))
    cols[4].metric("Compaction backlog", int(backlog["backlog"].sum()))
    cols[5].metric("Forward backlog", int(forward["backlog_samples"].sum()))
    devices_panel(status)
    with warehouse.connect() as conn:
        location_panels(conn, tables, v, locs, tz, now)
        buckets_panel(conn, tables, v, tz, now)
        quality_panel(conn, tables, since, tz)
    quarantine_panel(quarantine, v["quarantine_days"])
    backlog_panel(backlog)
    forward_panel(forward)
    with warehouse.connect() as conn:
        tags_section(conn, tables, tz, now)


if __name__ == "__main__":
    import sys

    page(parse_args(sys.argv[1:]))
