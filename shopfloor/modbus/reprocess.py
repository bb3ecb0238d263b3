"""Reprocess: judge a window of landed raw data again under a device's current rules.

Capture lands every sample with its verdict (:mod:`shopfloor.modbus.landed`). When a
rule changes (a tag's limits in the device's register map, or the reading schema), the
landed lines of a window are read back, judged by the same code capture uses
(:func:`shopfloor.modbus.sink.judge`), and the window is replaced downstream:
``temperature_raw`` rows of the device's ``loc_id`` and the device's quarantine rows of
those hours, in one transaction; then the landed objects are rewritten with the new
verdicts under the same keys. The window is whole UTC hours (objects are per hour);
hours without a landed object are left as they are. Repeating it changes nothing.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pandera.pandas as pa
from sqlalchemy import (
    JSON,
    TIMESTAMP,
    ColumnElement,
    Connection,
    and_,
    case,
    cast,
    delete,
    func,
    or_,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB

from shopfloor.db.schema import Tables
from shopfloor.db.upsert import upsert
from shopfloor.errors import UserError
from shopfloor.modbus.batch import Batch
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.landed import LandedLine, landed_batch, parse_object, rewritten_object
from shopfloor.modbus.readings import KEY_COLUMNS, RULES_VERSION, landed_prefix
from shopfloor.modbus.sink import Judgement, judge
from shopfloor.quality import QuarantinedRow, write_quarantine
from shopfloor.storage import StorageLocation

HOUR = timedelta(hours=1)
MAX_HOURS = 24 * 93  # a quarter: one run's objects are held in memory


def window_hours(start: datetime, end: datetime) -> list[datetime]:
    """The whole UTC hours covering ``[start, end)`` (aware datetimes).

    Raises:
        UserError: naive times, ``end`` not after ``start``, or a window longer
            than :data:`MAX_HOURS`.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise UserError("start and end need a time zone (e.g. 2026-11-20T08:00Z)")
    if end <= start:
        raise UserError(f"end ({end.isoformat()}) must be after start ({start.isoformat()})")
    first = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours = []
    while first < end:
        hours.append(first)
        first += HOUR
    if len(hours) > MAX_HOURS:
        raise UserError(f"the window has {len(hours)} hours, at most {MAX_HOURS} per run: "
                             "reprocess a long range in several runs")
    return hours


def hour_folder(cfg: DeviceConfig, hour: datetime) -> str:
    """The device's landed folder of one UTC hour."""
    return f"{landed_prefix(cfg)}{hour.strftime('%Y%m%d%H')}/"


@dataclass
class Rejudged:
    """One landed object judged again."""

    key: str
    hour: datetime
    lines: list[LandedLine]
    batch: Batch
    judged: Judgement
    body: bytes
    before_rejected: int
    changed: bool

    @property
    def rejected(self) -> int:
        return len(self.judged.rejected)

    def quarantined(self) -> list[QuarantinedRow]:
        """The rejected samples with their reasons, object key and line."""
        return [QuarantinedRow(q.record, q.reasons, self.key, self.lines[pos].line)
                for pos, q in zip(self.judged.rejected.tolist(), self.judged.quarantined,
                                  strict=True)]


def rejudge(cfg: DeviceConfig, key: str, hour: datetime, body: bytes,
            schema: pa.DataFrameSchema) -> Rejudged:
    """Judge a landed object's lines under ``cfg`` and build its rewritten body."""
    lines = parse_object(body, key)
    batch = landed_batch(cfg, lines)
    judged = judge(batch, lambda: schema)
    new = rewritten_object(lines, judged.landed(batch), RULES_VERSION) if lines else body
    before = sum(1 for ln in lines if ln.record.get("verdict") == "rejected")
    return Rejudged(key, hour, lines, batch, judged, new, before, new != body)


def read_window(storage: StorageLocation, cfg: DeviceConfig, hours: Sequence[datetime],
                schema: pa.DataFrameSchema) -> list[Rejudged]:
    """Every landed ``.json`` object of the device's hour folders, judged again."""
    out = []
    for hour in hours:
        for obj in storage.list_objects(hour_folder(cfg, hour)):
            if obj.key.endswith(".json"):
                out.append(rejudge(cfg, obj.key, hour, storage.read_bytes(obj.key), schema))
    return out


def _ranges(hours: Sequence[datetime]) -> list[tuple[datetime, datetime]]:
    """Consecutive hours merged into ``[start, end)`` ranges."""
    out: list[tuple[datetime, datetime]] = []
    for h in sorted(set(hours)):
        if out and out[-1][1] == h:
            out[-1] = (out[-1][0], h + HOUR)
        else:
            out.append((h, h + HOUR))
    return out


def _capture_time(record: ColumnElement[str], dialect: str) -> tuple[ColumnElement, bool]:
    """The ``capture_dt`` of a quarantine row's JSON ``record``, read by the database:
    ``(expression, is_timestamp)``.

    PostgreSQL casts it to ``timestamptz`` (any offset, compared as instants). Elsewhere
    it is the ISO text's first 19 characters, ``YYYY-MM-DDTHH:MM:SS``: capture writes
    ``capture_dt`` in UTC, and strings of one shape compare in time order under every
    collation.
    """
    if dialect == "postgresql":
        text = cast(record, JSONB)["capture_dt"].astext
        return cast(text, TIMESTAMP(timezone=True)), True
    text = type_coerce(record, JSON)["capture_dt"].as_string()
    cut = func.substring if dialect == "mssql" else func.substr
    return cut(text, 1, 19), False


def quarantine_of_hours(tables: Tables, source: str, hours: Sequence[datetime],
                        dialect: str) -> ColumnElement[bool]:
    """``source``'s quarantine rows whose reading (``capture_dt`` in the JSON record)
    falls in one of the UTC ``hours``: one condition for the database, values bound."""
    q = tables.quarantine
    at, stamped = _capture_time(q.c.record, dialect)
    # Read only from the source's own rows: another writer's record may not be JSON.
    at = case((q.c.source == source, at))

    def bound(t: datetime) -> datetime | str:
        return t if stamped else t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")

    return and_(q.c.source == source,
                or_(*[and_(at >= bound(a), at < bound(b)) for a, b in _ranges(hours)]))


@dataclass
class Replaced:
    """What replacing a window did in the database."""

    raw_deleted: int = 0
    raw_written: int = 0
    quarantine_deleted: int = 0
    quarantine_written: int = 0
    hours: list[datetime] = field(default_factory=list)


def replace_window(conn: Connection, tables: Tables, cfg: DeviceConfig,
                   objects: Sequence[Rejudged], run_id: str,
                   ingested_at: datetime | None) -> Replaced:
    """Replace the device's rows of the objects' hours (call inside one transaction):
    ``temperature_raw`` rows of its ``loc_id`` and its quarantine rows (source
    ``modbus:<device>``, as capture writes them), by what the objects now say."""
    hours = sorted({o.hour for o in objects})
    out = Replaced(hours=hours)
    if not hours:
        return out
    raw = tables.temperature_raw
    when = or_(*[and_(raw.c.capture_dt >= a, raw.c.capture_dt < b) for a, b in _ranges(hours)])
    out.raw_deleted = conn.execute(delete(raw).where(raw.c.loc_id == cfg.loc_id, when)).rowcount
    source = f"modbus:{cfg.name}"
    for i in range(0, len(hours), 500):  # below every dialect's parameter limit
        out.quarantine_deleted += conn.execute(delete(tables.quarantine).where(
            quarantine_of_hours(tables, source, hours[i:i + 500], conn.dialect.name))).rowcount
    rows = [r for o in objects for r in o.batch.take(o.judged.keep).raw_rows(ingested_at)]
    if rows:
        upsert(conn, raw, rows, list(KEY_COLUMNS))
    out.raw_written = len(rows)
    out.quarantine_written = write_quarantine(
        conn, tables, [q for o in objects for q in o.quarantined()], source, run_id)
    return out


def delete_hourly(conn: Connection, tables: Tables, keys: Sequence[tuple[str, str, str]]) -> int:
    """Delete ``temperature_hourly`` rows by ``(loc_id, ymd, hh)``: hours of a
    reprocessed location left without any valid reading."""
    h = tables.temperature_hourly
    for loc_id, ymd, hh in keys:
        conn.execute(delete(h).where(h.c.loc_id == loc_id, h.c.ymd == ymd, h.c.hh == hh))
    return len(keys)
