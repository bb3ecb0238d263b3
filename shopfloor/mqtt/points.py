"""A message's values as tag points before they have ids: the tag as the registry will
know it, the time, the value and its quality."""

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, Table

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


class PointBatch:
    """A batch's points, the distinct :class:`TagInfo` objects among them (by ``id()``),
    and whether a (tag, time) can repeat in it.

    Two shapes: points (any quality, any time), and *rows* of good numbers: a JSON
    message whose every value is a number within its range is kept as (its tags, its
    time, its values), without a point object per value, and goes to ``COPY`` as
    such (the common case, and the ingestion's hottest path).

    A JSON message's points share one time and name distinct tags of one device, so
    the batch has no repeated key when no (device, time) repeats among its JSON
    messages: checked once a message instead of once a point. Sparkplug B points
    (metrics with times of their own) are checked point by point.
    """

    def __init__(self) -> None:
        self.points: list[TagPoint] = []
        self.rows: list[tuple[list[TagInfo], int, list[float]]] = []
        self.tags: dict[int, TagInfo] = {}
        self._plans_seen: set[int] = set()
        self._message_keys: list[tuple[str, int]] = []
        self._check_points = False

    def __len__(self) -> int:
        return len(self.points) + sum(len(values) for _, _, values in self.rows)

    def _message_tags(self, tags: list[TagInfo]) -> None:
        if id(tags) not in self._plans_seen:
            self._plans_seen.add(id(tags))
            self.tags.update((id(t), t) for t in tags)

    def add_message(self, points: list[TagPoint], tags: list[TagInfo]) -> None:
        """One JSON message's points (all at one time), of ``tags`` (one device's,
        distinct; the same list object for every message of a topic)."""
        self.points += points
        self._message_tags(tags)
        if points:
            self._message_keys.append((points[0].tag.device, points[0].ms))

    def add_row(self, tags: list[TagInfo], ms: int, values: list[float]) -> None:
        """One JSON message whose values (one per tag of ``tags``) are all good."""
        self.rows.append((tags, ms, values))
        self._message_tags(tags)
        if tags:
            self._message_keys.append((tags[0].device, ms))

    def add_points(self, points: list[TagPoint]) -> None:
        """Points of any times (a Sparkplug B message)."""
        self.points += points
        self.tags.update((id(p.tag), p.tag) for p in points)
        self._check_points = self._check_points or bool(points)

    def may_repeat(self) -> bool:
        return self._check_points or \
            len(set(self._message_keys)) != len(self._message_keys)

    def all_points(self) -> list[TagPoint]:
        """Every value as a point (the rows too)."""
        return self.points + [TagPoint(t, ms, v) for tags, ms, values in self.rows
                              for t, v in zip(tags, values, strict=True)]


def _last_per_key(points: Sequence[TagPoint], id_of: Mapping[int, int], may_repeat: bool
                  ) -> tuple[list[int], list[TagPoint]]:
    """Tag ids and points, one per (tag, time): the last given wins, as a repeated
    upsert would (a message sent twice in one batch). ``id_of``: ``id()`` of each
    point's :class:`TagInfo` object -> its tag id (a batch shares a few objects)."""
    tag_ids = [id_of[id(p.tag)] for p in points]
    if not may_repeat:
        return tag_ids, list(points)
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
        value = p.value
        if value is not None and p.reason is None and p.text is None:  # most points
            lines.append(f"{tag_id},{ts},{value!r},,{p.quality},,{now}")
        else:
            lines.append(f"{tag_id},{ts},{'' if value is None else repr(value)},"
                         f"{_csv_text(p.text)},{p.quality},{_csv_text(p.reason)},{now}")
    return "\n".join(lines) + ("\n" if lines else "")


# PostgreSQL's binary COPY format (its manual, "COPY: Binary Format"): a signature, flags
# and a header extension length; each tuple its field count and each field its length
# (-1: NULL) and value (big-endian; timestamps as microseconds since 2000-01-01); a -1
# field count ends it.
_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)
_PG_EPOCH_MS = 946_684_800_000  # 2000-01-01T00:00:00Z in epoch milliseconds
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
# A good number (text_value and reason NULL): the whole tuple in one pack.
_GOOD_ROW = struct.Struct(">hiqiqidiihiiq")
_FIELDS, _I8, _F8, _I2, _NULL = 7, 8, 8, 2, -1
_HEAD = struct.Struct(">hiqiq")  # field count, tag_id, ts
_TAIL = struct.Struct(">ihiiq")  # quality (length, value) ... ingested_at


def _text_field(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">i", _NULL)
    data = value.encode("utf-8")
    return struct.pack(">i", len(data)) + data


def copy_data(batch: PointBatch, id_of: Mapping[int, int], ingested_at: datetime) -> bytes:
    """The batch's points (its points, then its rows of good numbers) in
    :data:`COLUMNS` order as PostgreSQL's binary ``COPY`` data, what
    :func:`write_tag_points` copies; ``id_of``: see :func:`_last_per_key`.

    Binary rather than CSV: PostgreSQL parses no text (two timestamps and a float a
    row), measured 41 ms against 56 ms a ``COPY`` of 25,000 rows, and the tuples are
    built with one ``struct`` pack each (5.0 against 7.6 ms); the ``COPY`` is the
    collector's bottleneck (benchmarks/README.md, "MQTT ingestion")."""
    ingested = (ingested_at - _PG_EPOCH) // timedelta(microseconds=1)
    out = bytearray(_HEADER)
    for p in batch.points:
        out += _HEAD.pack(_FIELDS, _I8, id_of[id(p.tag)], _I8, (p.ms - _PG_EPOCH_MS) * 1000)
        out += struct.pack(">id", _F8, p.value) if p.value is not None else \
            struct.pack(">i", _NULL)
        out += _text_field(p.text)
        out += struct.pack(">ih", _I2, p.quality)
        out += _text_field(p.reason)
        out += struct.pack(">iq", _I8, ingested)
    pack = _GOOD_ROW.pack
    ids_of_tags: dict[int, list[int]] = {}
    for tags, ms, values in batch.rows:
        ids = ids_of_tags.get(id(tags))
        if ids is None:
            ids = ids_of_tags[id(tags)] = [id_of[id(t)] for t in tags]
        ts = (ms - _PG_EPOCH_MS) * 1000
        for i, v in zip(ids, values, strict=True):
            out += pack(_FIELDS, _I8, i, _I8, ts, _F8, v, _NULL, _I2, GOOD, _NULL, _I8,
                        ingested)
    out += _TRAILER
    return bytes(out)


def copies(bind: Connection | Engine, batch: PointBatch) -> bool:
    """Whether :func:`write_tag_points` sends ``batch`` with one ``COPY`` of
    :func:`copy_data` (PostgreSQL, 500 points and more, no key twice)."""
    return not batch.may_repeat() and can_copy_upsert(bind, len(batch))


def write_tag_points(conn: Connection, table: Table, batch: PointBatch,
                     id_of: Mapping[int, int], ingested_at: datetime,
                     data: bytes | None = None) -> Written:
    """Upsert the batch's points into ``tag_samples`` keyed ``(tag_id, ts)`` in the
    caller's transaction: ``COPY`` on PostgreSQL for 500 points and more (through
    ``copy_upsert_csv``: straight in, or staged when a key is already there), else
    the portable batch upsert. A repeat overwrites. ``id_of``: see
    :func:`_last_per_key`. ``data``: the batch's :func:`copy_data`, rendered before
    (the collector renders it while the previous batch is written), used when the
    batch :func:`copies`."""
    n = len(batch)
    if copies(conn, batch):
        copy_upsert_csv(conn, table, COLUMNS,
                        data if data is not None else copy_data(batch, id_of, ingested_at),
                        KEY_COLUMNS)
        qualities = [p.quality for p in batch.points]
        return Written(n, qualities.count(BAD), qualities.count(UNCERTAIN))
    tag_ids, points = _last_per_key(batch.all_points(), id_of, batch.may_repeat())
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
