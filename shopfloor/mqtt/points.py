"""A message's values as tag points before they have ids: the tag as the registry will
know it, the time, the value and its quality."""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Table

from shopfloor.db.copy_upsert import can_copy_upsert, copy_upsert_csv
from shopfloor.db.upsert import upsert
from shopfloor.modbus.tag_points import COLUMNS, KEY_COLUMNS
from shopfloor.tags.quality import BAD, GOOD, NOT_FINITE, UNCERTAIN, out_of_range
from shopfloor.tags.registry import TagInfo


@dataclass(slots=True)
class TagPoint:
    """One value of one tag at one time (``ms``: epoch milliseconds). Not frozen: a
    frozen dataclass costs a ``object.__setattr__`` per field, and a message of a
    hundred values makes a hundred of these."""

    tag: TagInfo
    ms: int
    value: float | None = None
    text: str | None = None
    quality: int = GOOD
    reason: str | None = None


def judged(tag: TagInfo, ms: int, value: float, lo: float | None = None,
           hi: float | None = None) -> TagPoint:
    """A numeric point, bad when not finite or outside ``[lo, hi]``."""
    if not math.isfinite(value):
        return TagPoint(tag, ms, None, None, BAD, NOT_FINITE)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        return TagPoint(tag, ms, value, None, BAD, out_of_range(
            -math.inf if lo is None else lo, math.inf if hi is None else hi))
    return TagPoint(tag, ms, value)


@dataclass(frozen=True)
class Written:
    """What a write sent: points, and how many of them bad or uncertain."""

    points: int
    bad: int
    uncertain: int


def _last_per_key(points: Sequence[TagPoint], id_of: Mapping[int, int]
                  ) -> tuple[list[int], list[TagPoint]]:
    """Tag ids and points, one per (tag, time): the last given wins, as a repeated
    upsert would (a message sent twice in one batch). ``id_of``: ``id()`` of each
    point's :class:`TagInfo` object -> its tag id (a batch shares a few objects)."""
    tag_ids = [id_of[id(p.tag)] for p in points]
    keys = set(zip(tag_ids, [p.ms for p in points], strict=True))
    if len(keys) == len(tag_ids):
        return tag_ids, list(points)
    last = {(t, p.ms): (t, p) for t, p in zip(tag_ids, points, strict=True)}
    return [t for t, _ in last.values()], [p for _, p in last.values()]


def _csv_text(value: str | None) -> str:
    return "" if value is None else '"' + value.replace('"', '""') + '"'


def points_csv(tag_ids: Sequence[int], points: Sequence[TagPoint],
               ingested_at: datetime) -> str:
    """PostgreSQL CSV in :data:`COLUMNS` order (times naive UTC, as ``UtcDateTime``
    stores them; floats exact through ``repr``; NULL as an empty field). Built line by
    line: a batch's points share a few times, each formatted once."""
    now = ingested_at.astimezone(UTC).replace(tzinfo=None).isoformat()
    stamps: dict[int, str] = {}
    lines = []
    for tag_id, p in zip(tag_ids, points, strict=True):
        ts = stamps.get(p.ms)
        if ts is None:
            ts = stamps[p.ms] = datetime.fromtimestamp(p.ms / 1000, UTC).replace(
                tzinfo=None).isoformat(timespec="milliseconds")
        value = "" if p.value is None else repr(p.value)
        if p.reason is None and p.text is None:
            lines.append(f"{tag_id},{ts},{value},,{p.quality},,{now}")
        else:
            lines.append(f"{tag_id},{ts},{value},{_csv_text(p.text)},{p.quality},"
                         f"{_csv_text(p.reason)},{now}")
    return "\n".join(lines) + ("\n" if lines else "")


def tags_of(points: Sequence[TagPoint]) -> dict[int, TagInfo]:
    """The distinct :class:`TagInfo` objects of ``points``, by ``id()``."""
    out: dict[int, TagInfo] = {}
    for p in points:
        out.setdefault(id(p.tag), p.tag)
    return out


def write_tag_points(conn: Connection, table: Table, points: Sequence[TagPoint],
                     id_of: Mapping[int, int], ingested_at: datetime) -> Written:
    """Upsert ``points`` into ``tag_samples`` keyed ``(tag_id, ts)`` in the caller's
    transaction: ``COPY`` on PostgreSQL for 500 points and more (through
    ``copy_upsert_csv``: straight in, or staged when a key is already there), else
    the portable batch upsert. A repeat overwrites. ``id_of``: see
    :func:`_last_per_key`."""
    tag_ids, points = _last_per_key(points, id_of)
    if can_copy_upsert(conn, len(points)):
        copy_upsert_csv(conn, table, COLUMNS, points_csv(tag_ids, points, ingested_at),
                        KEY_COLUMNS)
    elif points:
        upsert(conn, table, [
            {"tag_id": t, "ts": datetime.fromtimestamp(p.ms / 1000, UTC),
             "value": p.value, "text_value": p.text, "quality": p.quality,
             "reason": p.reason, "ingested_at": ingested_at}
            for t, p in zip(tag_ids, points, strict=True)], list(KEY_COLUMNS))
    qualities = [p.quality for p in points]
    return Written(len(points), qualities.count(BAD), qualities.count(UNCERTAIN))
