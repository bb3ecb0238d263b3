"""Late data on a raw table without ``ingested_at``: by reading time, with an allowance.

With ``ingested_at`` (:func:`shopfloor.aggregation.transfer.plan_late`) a run finds every
row written since the last run, however old its reading. A raw table its own writers
fill without that column (the seed's ``flet_montrg.temperature_raw``) only tells when a
reading was taken. The watermark is then the newest ``capture_dt`` seen (never past the
run's logical time, so a device clock running ahead cannot drag it forward), and a run
re-aggregates the hours that hold rows read at most ``lateness`` before it. A row that
arrives later than that after its reading, in an hour no newer row touches, is not
found: that is a backfill's job (``hourly-backfill``). Weaker than ``ingested_at`` by
construction, and said so in docs/aggregation.md.
"""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from shopfloor.aggregation.hours import hour_start, local_hour_index, offset_segments
from shopfloor.aggregation.statements import late_pairs_select, late_range_select
from shopfloor.aggregation.transfer import LatePlan
from shopfloor.db.schema import Tables

DEFAULT_LATENESS_MINUTES = 60


def late_since(watermark: datetime | None, lateness: timedelta, now: datetime) -> datetime:
    """The reading time from which rows count as possibly late: ``lateness`` before the
    watermark, or before ``now`` on the first run (history is a backfill's, not one
    incremental run's)."""
    return (watermark if watermark is not None else now) - lateness


def plan_late_by_capture(conn: Connection, tables: Tables, tz: ZoneInfo,
                         watermark: datetime | None, lateness: timedelta,
                         now: datetime) -> LatePlan:
    """The ``(loc_id, hour)`` pairs holding rows read in ``[watermark - lateness, now]``,
    and the new watermark (the newest ``capture_dt`` up to ``now``, never moved back)."""
    since = late_since(watermark, lateness, now)
    first, last, upto, n = conn.execute(
        late_range_select(tables, since, "capture_dt", now)).one()
    if not n:
        return LatePlan([], 0, watermark)
    start = hour_start(local_hour_index(first, tz), tz)
    end = hour_start(local_hour_index(last, tz) + 1, tz)
    stmt = late_pairs_select(tables, offset_segments(start, end, tz), since, upto, start, end,
                             "capture_dt")
    pairs = [(r.loc_id, int(r.hour_index)) for r in conn.execute(stmt)]
    new = max(upto, watermark) if watermark is not None else upto
    return LatePlan(pairs, int(n), new)
