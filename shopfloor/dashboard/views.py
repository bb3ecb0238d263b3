"""Pure shaping of query results for the page: ages, windows, local times, headline numbers."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd

# Upper bounds (seconds, exclusive) of the age buckets a reading falls in; older is "> 24 h".
AGE_BUCKETS = ((300, "< 5 min"), (900, "5-15 min"), (3600, "15-60 min"), (86400, "1-24 h"))
OLDEST_BUCKET, NEVER = "> 24 h", "never"


def age_bucket(age_seconds: float | None) -> str:
    """The age bucket of a last reading ``age_seconds`` old (None: never heard from)."""
    if age_seconds is None or pd.isna(age_seconds):
        return NEVER
    for bound, label in AGE_BUCKETS:
        if age_seconds < bound:
            return label
    return OLDEST_BUCKET


def age_text(age_seconds: float | None) -> str:
    """``42 s``, ``7 min``, ``3.5 h``, ``12 d`` or ``never``."""
    if age_seconds is None or pd.isna(age_seconds):
        return NEVER
    if age_seconds < 120:
        return f"{age_seconds:.0f} s"
    if age_seconds < 7200:
        return f"{age_seconds / 60:.0f} min"
    if age_seconds < 172800:
        return f"{age_seconds / 3600:.1f} h"
    return f"{age_seconds / 86400:.0f} d"


def device_status(devices: pd.DataFrame, now: datetime,
                  online_within: timedelta) -> pd.DataFrame:
    """``devices`` (from :func:`~shopfloor.dashboard.queries.last_readings`) with
    age_seconds, age, age_bucket and online (last reading within ``online_within``)."""
    df = devices.copy()
    ages = (pd.Timestamp(now) - df["last_reading"]).dt.total_seconds()
    df["age_seconds"] = ages
    df["age"] = [age_text(a) for a in ages]
    df["age_bucket"] = [age_bucket(a) for a in ages]
    df["online"] = ages.le(online_within.total_seconds()).fillna(False).astype(bool)
    return df


@dataclass(frozen=True)
class Headline:
    """The numbers at the top of the page."""

    online: int
    known: int
    newest_age_bucket: str


def headline(status: pd.DataFrame) -> Headline:
    """Devices online, devices known, and the age bucket of the newest reading of all."""
    newest = status["age_seconds"].min() if not status.empty else None
    return Headline(int(status["online"].sum()), len(status), age_bucket(newest))


def local_days(now: datetime, tz: ZoneInfo, days: int) -> tuple[str, str]:
    """``(first_ymd, last_ymd)`` of the last ``days`` local days, today included."""
    today = now.astimezone(tz).date()
    return _ymd(today - timedelta(days=days - 1)), _ymd(today)


def _ymd(day: date) -> str:
    return day.strftime("%Y%m%d")


def local_day_start(ymd: str, tz: ZoneInfo) -> datetime:
    """The UTC instant local day ``ymd`` begins in ``tz``."""
    return datetime.strptime(ymd, "%Y%m%d").replace(tzinfo=tz).astimezone(ZoneInfo("UTC"))


def hour_of(ymd: pd.Series, hh: pd.Series) -> pd.Series:
    """Wall-clock hours (naive, local) from ``ymd`` and ``hh`` columns, for a chart axis."""
    return pd.to_datetime(ymd + hh, format="%Y%m%d%H")


def wall_clock(utc: pd.Series, tz: ZoneInfo) -> pd.Series:
    """Aware UTC instants as naive wall-clock times in ``tz``, for a chart axis."""
    return utc.dt.tz_convert(tz).dt.tz_localize(None)


def local_ymd(utc: pd.Series, tz: ZoneInfo) -> pd.Series:
    """The local day (``YYYYMMDD``) of aware UTC instants."""
    return utc.dt.tz_convert(tz).dt.strftime("%Y%m%d")


def forward_backlog_status(backlog: pd.DataFrame, now: datetime) -> pd.DataFrame:
    """``backlog`` (from :func:`~shopfloor.dashboard.queries.forward_backlog`) with the
    age of each sink's oldest waiting sample (``oldest_age``: ``-`` when nothing waits)
    and of its report (``reported``: a collector that is not capturing reports nothing,
    so an old report is the state it was left in)."""
    df = backlog.copy()
    oldest = (pd.Timestamp(now) - df["oldest_sample_at"]).dt.total_seconds()
    reported = (pd.Timestamp(now) - df["reported_at"]).dt.total_seconds()
    df["oldest_age"] = ["-" if pd.isna(a) else age_text(max(a, 0.0)) for a in oldest]
    df["reported"] = [f"{age_text(max(a, 0.0))} ago" for a in reported]
    return df


# Bucket widths a trend may use (seconds): round to read on an axis, from one second to a day.
TREND_WIDTHS = (1, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
                43200, 86400)
TREND_BUCKETS = 300  # at most this many buckets per tag: a chart's width, not the data's


def trend_width(range_seconds: float, buckets: int = TREND_BUCKETS) -> int:
    """The smallest round bucket width that splits ``range_seconds`` into at most
    ``buckets`` buckets (a day when even that gives more): 30 days -> 3 h, 240 buckets."""
    for width in TREND_WIDTHS:
        if range_seconds / width <= buckets:
            return width
    return TREND_WIDTHS[-1]


def width_text(seconds: int) -> str:
    """``10 s``, ``5 min``, ``3 h``, ``1 d``."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def tag_label(name: str, device: str, unit: str | None) -> str:
    """How the picker and the charts name a tag: ``line_pressure (plc-1, bar)``."""
    return f"{name} ({device}, {unit})" if unit else f"{name} ({device})"


def quality_class(code: float | None) -> str:
    """``good`` / ``uncertain`` / ``bad`` by OPC's ranges (192-255, 64-191, 0-63);
    ``-`` when there is no point."""
    if code is None or pd.isna(code):
        return "-"
    return "good" if code >= 192 else "uncertain" if code >= 64 else "bad"


def trend_marks(trend: pd.DataFrame, marks: pd.DataFrame) -> pd.DataFrame:
    """``trend`` (from :func:`~shopfloor.dashboard.queries.tag_trend`) with ``marks``
    (from :func:`~shopfloor.dashboard.queries.tag_marks`) as one text per bucket:
    ``reasons`` (``bad 3: out of range [0, 10]; uncertain 1: stale``, empty when every
    point was good) and ``worst`` (the worst quality class in the bucket)."""
    df = trend.copy()
    text: dict[tuple, list[str]] = {}
    for m in marks.itertuples():
        reason = m.reason if isinstance(m.reason, str) and m.reason else "no reason given"
        text.setdefault((m.tag_id, m.bucket_start), []).append(
            f"{quality_class(m.quality)} {int(m.points)}: {reason}")
    df["reasons"] = ["; ".join(text.get((r.tag_id, r.bucket_start), []))
                     for r in df.itertuples()]
    df["worst"] = ["bad" if r.bad else "uncertain" if r.uncertain else "good"
                   for r in df.itertuples()]
    return df


def trend_summary(trend: pd.DataFrame) -> pd.DataFrame:
    """One row per tag of a trend: points, min, max, the average weighted by each
    bucket's number of values (never an average of averages), and points not good."""
    if trend.empty:
        return pd.DataFrame(columns=["tag_id", "points", "value_min", "value_avg",
                                     "value_max", "not_good"])
    weighted = trend.assign(total=trend["value_avg"].fillna(0) * trend["values"],
                            not_good=trend["uncertain"] + trend["bad"])
    g = weighted.groupby("tag_id")
    out = pd.DataFrame({"points": g["points"].sum(), "value_min": g["value_min"].min(),
                        "value_max": g["value_max"].max(),
                        "value_avg": g["total"].sum() / g["values"].sum().replace(0, pd.NA),
                        "not_good": g["not_good"].sum()})
    return out.reset_index()
