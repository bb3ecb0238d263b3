"""The GROUP BY pushed down to the source database, portable across dialects.

The hour bucket of a reading is its local hour index (see :mod:`.hours`):
``floor((epoch seconds of capture_dt + UTC offset) / 3600)``. The offset is constant
within each :class:`~shopfloor.aggregation.hours.OffsetSegment`, so it is a ``CASE`` on
``capture_dt`` over the window's segments (usually one or two), computed in Python from
zoneinfo; no database needs time-zone tables. Only "epoch seconds of a naive UTC
timestamp" differs per dialect, in :class:`local_hour_index`. Every value is bound.
"""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    String,
    and_,
    case,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from shopfloor.aggregation.hours import OffsetSegment, ymd_hh
from shopfloor.aggregation.windows import Window
from shopfloor.db.schema import Tables

MEASURES = ("temperature", "humidity", "pcv_temperature")
HOURLY_KEY = ("loc_id", "ymd", "hh")
# What makes hourly rows roll up exactly into days and months (docs/aggregation.md):
# per measure the count of non-null samples, their sum and min (max is below).
ROLLUP_COLUMNS = tuple(f"{m}_{a}" for m in MEASURES for a in ("count", "sum", "min"))
COUNT_COLUMNS = tuple(f"{m}_count" for m in MEASURES)
# The value columns of ``temperature_hourly``: max and avg per measure, then the rollup
# columns.
VALUE_COLUMNS = (*(f"{m}_{a}" for m in MEASURES for a in ("max", "avg")), *ROLLUP_COLUMNS)


class local_hour_index(FunctionElement):  # noqa: N801 (SQL function style)
    """``local_hour_index(naive_utc_ts, offset_seconds)``: compiled per dialect below."""

    type = BigInteger()
    inherit_cache = True
    name = "local_hour_index"


def _args(element: local_hour_index, compiler, **kw) -> tuple[str, str]:
    ts, offset = (compiler.process(c, **kw) for c in element.clauses)
    return ts, offset


@compiles(local_hour_index)
def _sqlite(element, compiler, **kw) -> str:
    # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff'; %s is whole epoch seconds; / is integer.
    ts, offset = _args(element, compiler, **kw)
    return f"((CAST(strftime('%s', {ts}) AS INTEGER) + {offset}) / 3600)"


@compiles(local_hour_index, "postgresql")
def _postgresql(element, compiler, **kw) -> str:
    # date_part returns double precision, much faster than EXTRACT's numeric; exact
    # to the microsecond for these dates, and k*3600/3600 is exact in IEEE doubles.
    ts, offset = _args(element, compiler, **kw)
    return f"CAST(FLOOR((date_part('epoch', {ts}) + {offset}) / 3600) AS BIGINT)"


@compiles(local_hour_index, "mysql")
@compiles(local_hour_index, "mariadb")
def _mysql(element, compiler, **kw) -> str:
    # TIMESTAMPDIFF on DATETIME ignores the session time zone (UNIX_TIMESTAMP does not).
    ts, offset = _args(element, compiler, **kw)
    return f"FLOOR((TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', {ts}) + {offset}) / 3600)"


@compiles(local_hour_index, "mssql")
def _mssql(element, compiler, **kw) -> str:
    # DATEDIFF_BIG counts second boundaries (a floor); bigint / int is integer division.
    ts, offset = _args(element, compiler, **kw)
    return f"((DATEDIFF_BIG(SECOND, '19700101', {ts}) + {offset}) / 3600)"


class as_double(FunctionElement):  # noqa: N801 (SQL function style)
    """A measure as double precision for AVG (the column itself where it already is)."""

    inherit_cache = True
    name = "as_double"


@compiles(as_double)
def _as_double_default(element, compiler, **kw) -> str:
    return compiler.process(list(element.clauses)[0], **kw)


@compiles(as_double, "mysql")
@compiles(as_double, "mariadb")
def _as_double_mysql(element, compiler, **kw) -> str:
    # Float columns are single-precision FLOAT on MySQL, and AVG(FLOAT) comes back rounded
    # to a few decimals; adding a DOUBLE zero makes AVG sum and return doubles.
    return f"({compiler.process(list(element.clauses)[0], **kw)} + 0e0)"


def offset_expr(ts: ColumnElement, segments: Sequence[OffsetSegment]) -> ColumnElement:
    """The UTC offset (seconds) of ``ts``: a constant, or a CASE over the segments."""
    if len(segments) == 1:
        return literal(segments[0].offset_seconds, BigInteger)
    whens = [(ts < seg.end, literal(seg.offset_seconds, BigInteger)) for seg in segments[:-1]]
    return case(*whens, else_=literal(segments[-1].offset_seconds, BigInteger))


def window_filter(tables: Tables, start: datetime, end: datetime,
                  loc_ids: Sequence[str] | None) -> ColumnElement:
    """Rows of ``temperature_raw`` in ``[start, end)`` (UTC), optionally some locations."""
    raw = tables.temperature_raw
    cond = and_(raw.c.capture_dt >= start, raw.c.capture_dt < end)
    if loc_ids is not None:
        cond = and_(cond, raw.c.loc_id.in_(list(loc_ids)))
    return cond


def aggregate_select(tables: Tables, segments: Sequence[OffsetSegment], start: datetime,
                     end: datetime, loc_ids: Sequence[str] | None = None) -> Select:
    """``SELECT loc_id, hour_index, max/avg/count/sum/min per measure, sample_count ...
    GROUP BY``. COUNT(measure) counts the non-null samples, so avg = sum / count.

    The bucket is computed in a subquery and grouped on outside, so the bound offsets
    appear once (PostgreSQL cannot match two differently-bound copies of an expression).
    """
    raw = tables.temperature_raw
    bucket = local_hour_index(raw.c.capture_dt, offset_expr(raw.c.capture_dt, segments))
    inner = (
        select(raw.c.loc_id, bucket.label("hour_index"), *(raw.c[m] for m in MEASURES))
        .where(window_filter(tables, start, end, loc_ids))
        .subquery("b")
    )
    aggs = []
    for m in MEASURES:
        aggs += [func.max(inner.c[m]).label(f"{m}_max"),
                 func.avg(as_double(inner.c[m])).label(f"{m}_avg")]
    for m in MEASURES:
        aggs += [func.count(inner.c[m]).label(f"{m}_count"),
                 func.sum(as_double(inner.c[m])).label(f"{m}_sum"),
                 func.min(inner.c[m]).label(f"{m}_min")]
    return (
        select(inner.c.loc_id, inner.c.hour_index, *aggs, func.count().label("sample_count"))
        .group_by(inner.c.loc_id, inner.c.hour_index)
    )


def raw_count_select(tables: Tables, start: datetime, end: datetime,
                     loc_ids: Sequence[str] | None = None) -> Select:
    """``SELECT COUNT(*)`` of the raw rows in the window (for validation)."""
    return select(func.count()).select_from(tables.temperature_raw).where(
        window_filter(tables, start, end, loc_ids))


def late_range_select(tables: Tables, since: datetime | None, column: str = "ingested_at",
                      upto: datetime | None = None) -> Select:
    """Min/max ``capture_dt``, max ``column`` and count of rows with ``column`` after
    ``since`` (and at most ``upto``): rows ingested since the watermark, or (``column``
    ``capture_dt``, a raw table without ``ingested_at``) rows read since it."""
    raw = tables.temperature_raw
    col = raw.c[column]
    stmt = select(func.min(raw.c.capture_dt), func.max(raw.c.capture_dt),
                  func.max(col), func.count())
    if since is not None:
        stmt = stmt.where(col > since)
    return stmt.where(col <= upto) if upto is not None else stmt


def late_pairs_select(tables: Tables, segments: Sequence[OffsetSegment], since: datetime | None,
                      upto: datetime, start: datetime, end: datetime,
                      column: str = "ingested_at") -> Select:
    """Distinct ``(loc_id, hour_index)`` of rows whose ``column`` is in ``(since, upto]``."""
    raw = tables.temperature_raw
    col = raw.c[column]
    bucket = local_hour_index(raw.c.capture_dt, offset_expr(raw.c.capture_dt, segments))
    cond = and_(col <= upto, window_filter(tables, start, end, None))
    if since is not None:
        cond = and_(cond, col > since)
    inner = select(raw.c.loc_id, bucket.label("hour_index")).where(cond).subquery("late")
    return select(inner.c.loc_id, inner.c.hour_index).distinct()


def hourly_in_window_select(tables: Tables, window: Window) -> Select:
    """Key and sample count of the ``temperature_hourly`` rows inside ``window``."""
    h = tables.temperature_hourly
    (y0, h0), (y1, h1) = ymd_hh(window.first), ymd_hh(window.last)
    # (ymd, hh) >= (y0, h0) AND (ymd, hh) < (y1, h1), spelled out for every dialect.
    cond = and_(
        or_(h.c.ymd > y0, and_(h.c.ymd == y0, h.c.hh >= h0)),
        or_(h.c.ymd < y1, and_(h.c.ymd == y1, h.c.hh < h1)),
    )
    if window.loc_ids is not None:
        cond = and_(cond, h.c.loc_id.in_(list(window.loc_ids)))
    cols = [h.c[c] for c in (*HOURLY_KEY, *VALUE_COLUMNS, "sample_count")]
    return select(*cols).where(cond)


class hour_ymd(FunctionElement):  # noqa: N801 (SQL function style)
    """``'YYYYMMDD'`` of a local hour index, computed in SQL (in-database path)."""

    type = String(8)
    inherit_cache = True
    name = "hour_ymd"


class hour_hh(FunctionElement):  # noqa: N801 (SQL function style)
    """``'HH'`` of a local hour index, computed in SQL (in-database path)."""

    type = String(2)
    inherit_cache = True
    name = "hour_hh"


_LABEL_FORMATS = {hour_ymd: ("YYYYMMDD", "%Y%m%d"), hour_hh: ("HH24", "%H")}


@compiles(hour_ymd)
@compiles(hour_hh)
def _label_sqlite(element, compiler, **kw) -> str:
    index = compiler.process(list(element.clauses)[0], **kw)
    return f"strftime('{_LABEL_FORMATS[type(element)][1]}', ({index}) * 3600, 'unixepoch')"


@compiles(hour_ymd, "postgresql")
@compiles(hour_hh, "postgresql")
def _label_postgresql(element, compiler, **kw) -> str:
    index = compiler.process(list(element.clauses)[0], **kw)
    fmt = _LABEL_FORMATS[type(element)][0]
    return f"to_char(TIMESTAMP '1970-01-01' + ({index}) * INTERVAL '1 hour', '{fmt}')"


def labelled_select(tables: Tables, segments: Sequence[OffsetSegment], start: datetime,
                    end: datetime, loc_ids: Sequence[str] | None = None) -> Select:
    """:func:`aggregate_select` with ``ymd``/``hh`` computed in SQL (one row per hourly row)."""
    g = aggregate_select(tables, segments, start, end, loc_ids).subquery("g")
    values = [g.c[c] for c in VALUE_COLUMNS]
    return select(g.c.loc_id, hour_ymd(g.c.hour_index).label("ymd"),
                  hour_hh(g.c.hour_index).label("hh"), *values, g.c.sample_count)
