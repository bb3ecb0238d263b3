"""A device's readings as tag samples: every decoded tag of every reading, one point
each, with its own quality (docs/tags.md).

The capture's batch holds a reading per row and a column per tag; the narrow table
``tag_samples`` holds one row per (tag, time). A point is judged on its own: a value
outside its tag's range, a number that did not decode (NaN, infinity) or a tag whose
read failed makes that point bad with a reason, and the reading's other tags stay good.
A sample the device answered no read of gives a bad point per tag (``no answer``); a
number unchanged for its tag's ``stale_after`` readings is uncertain (``stale``).
"""

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import Connection, Engine, Table, select

from shopfloor.db.copy_upsert import can_copy_upsert, copy_upsert_csv
from shopfloor.db.schema import Tables
from shopfloor.db.upsert import upsert
from shopfloor.modbus.batch import Batch, epoch_ms, tag_bounds
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.tags import BIT_REGISTER_TYPES, TagSpec
from shopfloor.tags.quality import (
    BAD,
    GOOD,
    NO_ANSWER,
    NOT_FINITE,
    READ_FAILED,
    STALE,
    UNCERTAIN,
    out_of_range,
)
from shopfloor.tags.registry import TagInfo, register_tags

COLUMNS = ("tag_id", "ts", "value", "text_value", "quality", "reason", "ingested_at")
KEY_COLUMNS = ("tag_id", "ts")


def source_name(tag: TagSpec) -> str:
    """What the device calls the tag: its register, ``holding:100`` (``input:7.3`` for
    bit 3 of a register, ``coil:5`` for a coil)."""
    bit = f".{tag.bit}" if tag.bit is not None and tag.register_type not in \
        BIT_REGISTER_TYPES else ""
    return f"{tag.register_type}:{tag.address}{bit}"


def tag_infos(cfg: DeviceConfig) -> list[TagInfo]:
    """The registry's view of a device's register map."""
    return [TagInfo(name=t.name, device=cfg.name, location=cfg.loc_id or None,
                    unit=t.unit, data_type=t.data_type, description=t.description,
                    source_name=source_name(t)) for t in cfg.tags]


@dataclass(frozen=True)
class Points:
    """Tag samples as columns: one entry per (tag, reading), tag by tag."""

    tag_id: np.ndarray  # int64
    ms: np.ndarray  # int64 epoch milliseconds
    value: np.ndarray  # float64, NaN: no number (NULL)
    text: list[str | None]
    quality: np.ndarray  # int16 quality codes
    reason: list[str | None]

    def __len__(self) -> int:
        return len(self.tag_id)

    def rows(self, ingested_at: datetime) -> list[dict[str, object]]:
        """Rows for an upsert into ``tag_samples``."""
        values = [None if v != v else v for v in self.value.tolist()]
        return [{"tag_id": t, "ts": datetime.fromtimestamp(m / 1000, UTC), "value": v,
                 "text_value": x, "quality": q, "reason": r, "ingested_at": ingested_at}
                for t, m, v, x, q, r in zip(self.tag_id.tolist(), self.ms.tolist(), values,
                                            self.text, self.quality.tolist(), self.reason,
                                            strict=True)]

    def csv(self, ingested_at: datetime) -> tuple[list[str], str]:
        """The rows as PostgreSQL CSV for ``COPY`` (times naive UTC, as ``UtcDateTime``
        stores them; floats exact; NULL as an unquoted empty field)."""
        n = len(self)
        naive = ingested_at.astimezone(UTC).replace(tzinfo=None).isoformat()
        cols = [
            self.tag_id.astype(str).tolist(),
            np.datetime_as_string(self.ms.astype("datetime64[ms]")).tolist(),
            ["" if v != v else repr(v) for v in self.value.tolist()],
            [_csv_text(x) for x in self.text],
            self.quality.astype(str).tolist(),
            [_csv_text(r) for r in self.reason],
            [naive] * n,
        ]
        lines = [",".join(row) for row in zip(*cols, strict=True)]
        return list(COLUMNS), "\n".join(lines) + ("\n" if lines else "")


def _csv_text(value: str | None) -> str:
    return "" if value is None else '"' + value.replace('"', '""') + '"'


def _missing(batch: Batch) -> list[set[str]]:
    return [set(m.split(",")) if m else set() for m in batch.missing]


def _numeric(batch: Batch, tag: TagSpec, lost: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """Values, quality codes and reasons of a numeric tag's points."""
    n = len(batch)
    if tag.column not in batch.numeric:
        return np.full(n, np.nan), np.full(n, BAD, np.int16), [READ_FAILED] * n
    values = batch.matrix[:, batch.numeric.index(tag.column)].astype(float)
    lo, hi = tag_bounds(tag)
    finite = np.isfinite(values)
    with np.errstate(invalid="ignore"):
        outside = finite & ((values < lo) | (values > hi))
    bad = lost | ~finite | outside
    quality = np.where(bad, BAD, GOOD).astype(np.int16)
    reason: list[str | None] = [None] * n
    if bad.any():
        why = out_of_range(lo, hi)
        for i in np.flatnonzero(bad).tolist():
            reason[i] = READ_FAILED if lost[i] else (NOT_FINITE if not finite[i] else why)
    values = np.where(lost | ~finite, np.nan, values)
    return values, quality, reason


def _text(batch: Batch, tag: TagSpec, lost: np.ndarray
          ) -> tuple[list[str | None], np.ndarray, list[str | None]]:
    n = len(batch)
    column = batch.text.get(tag.column)
    texts: list[str | None] = ([None] * n if column is None else
                               [None if lost[i] or v is None else str(v)
                                for i, v in enumerate(column.tolist())])
    bad = np.array([v is None for v in texts], bool)
    quality = np.where(bad, BAD, GOOD).astype(np.int16)
    return texts, quality, [READ_FAILED if b else None for b in bad.tolist()]


Run = tuple[float, int]  # a tag's last value and how many readings in a row had it


@dataclass
class StaleRuns:
    """Per tag name, its run of equal values: as of the last committed write (``runs``)
    and as :func:`tag_points` left it for the batch being written (``pending``), adopted
    by :meth:`commit` once that batch is in (a failed write, retried, counts once)."""

    runs: dict[str, Run] = field(default_factory=dict)
    pending: dict[str, Run] | None = None
    loaded: bool = False  # the runs before the sink's first batch were read back

    def commit(self) -> None:
        if self.pending is not None:
            self.runs, self.pending = self.pending, None


def load_runs(conn: Connection, table: Table, cfg: DeviceConfig, ids: Mapping[str, int],
              before: datetime) -> dict[str, Run]:
    """The runs of equal values that the samples already written before ``before`` end
    with, for the device's tags with ``stale_after``: the last ``stale_after + 1``
    samples of each (one primary-key range read), judged as :func:`tag_points` judged
    them. So a run continues the last one's count (an hourly deployment's runs are one
    stream), and a replay after a crash gets the verdicts of the first write."""
    out: dict[str, Run] = {}
    for tag in cfg.tags:
        if tag.stale_after is None or tag.name not in ids:
            continue
        rows = conn.execute(
            select(table.c.value, table.c.quality)
            .where(table.c.tag_id == ids[tag.name], table.c.ts < before)
            .order_by(table.c.ts.desc()).limit(tag.stale_after + 1)).all()[::-1]
        if rows:
            values = np.array([math.nan if v is None else float(v) for v, _ in rows])
            quality = np.array([int(q) for _, q in rows], np.int16)
            out[tag.name] = _mark_stale(values, quality, [None] * len(rows),
                                        tag.stale_after, None)
    return out


def _mark_stale(values: np.ndarray, quality: np.ndarray, reason: list[str | None],
                after: int, run: Run | None) -> Run:
    """Make uncertain (``stale``) each good point whose value has not changed for
    ``after`` readings (the ``after + 1``-th equal reading in a row and those after it);
    a point with no value or a bad one ends the run. Returns the run at the end."""
    last, count = run if run is not None else (math.nan, 0)
    for i, v in enumerate(values.tolist()):
        if quality[i] == BAD or v != v:
            last, count = math.nan, 0
            continue
        last, count = (last, count + 1) if v == last else (v, 1)
        if count > after:
            quality[i] = UNCERTAIN
            reason[i] = STALE
    return last, count


def tag_points(batch: Batch, ids: Mapping[str, int], stale: StaleRuns | None = None
               ) -> Points:
    """Every tag of every sample of ``batch`` as a point (``ids``: tag name -> id; a tag
    without one is left out), judged point by point. A sample nobody answered gives
    bad points (``no answer``). ``stale``: the runs of equal values so far, for tags with
    ``stale_after`` (none given: nothing is marked stale); its ``pending`` is set."""
    n = len(batch)
    ms = np.fromiter((epoch_ms(dt) for dt in batch.capture_dts), np.int64, n)
    missing = _missing(batch)
    dead = np.flatnonzero(batch.no_answer()).tolist()
    runs = dict(stale.runs) if stale is not None else None
    parts: list[tuple] = []
    for tag in batch.cfg.tags:
        if tag.name not in ids:
            continue
        lost = np.fromiter((tag.name in m for m in missing), bool, n)
        if tag.is_numeric:
            values, quality, reason = _numeric(batch, tag, lost)
            texts: Sequence[str | None] = [None] * n
            if runs is not None and tag.stale_after is not None:
                runs[tag.name] = _mark_stale(values, quality, reason, tag.stale_after,
                                             runs.get(tag.name))
        else:
            texts, quality, reason = _text(batch, tag, lost)
            values = np.full(n, np.nan)
        for i in dead:
            reason[i] = NO_ANSWER
        parts.append((np.full(n, ids[tag.name], np.int64), ms, values, list(texts), quality,
                      reason))
    if not parts:
        return Points(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), [],
                      np.empty(0, np.int16), [])
    points = Points(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                    np.concatenate([p[2] for p in parts]), [x for p in parts for x in p[3]],
                    np.concatenate([p[4] for p in parts]), [x for p in parts for x in p[5]])
    if stale is not None:
        stale.pending = runs
    return _last_per_key(points) if len(set(ms.tolist())) < n else points


def _last_per_key(points: Points) -> Points:
    """One point per (tag, time), the last given (a batch that repeats a sample time
    would otherwise hit the same key twice in one statement)."""
    last: dict[tuple[int, int], int] = {}
    for i, key in enumerate(zip(points.tag_id.tolist(), points.ms.tolist(), strict=True)):
        last[key] = i
    keep = np.array(sorted(last.values()), dtype=np.int64)
    return Points(points.tag_id[keep], points.ms[keep], points.value[keep],
                  [points.text[i] for i in keep.tolist()], points.quality[keep],
                  [points.reason[i] for i in keep.tolist()])


def write_points(conn: Connection, table: Table, points: Points,
                 ingested_at: datetime) -> int:
    """Upsert ``points`` into ``tag_samples`` keyed (tag, time) in the caller's
    transaction: ``COPY`` on PostgreSQL for a big batch (a backlog), else the portable
    batch upsert. A repeat overwrites. Returns the points sent."""
    if can_copy_upsert(conn, len(points)):
        columns, csv = points.csv(ingested_at)
        copy_upsert_csv(conn, table, columns, csv, list(KEY_COLUMNS))
    elif len(points):
        upsert(conn, table, points.rows(ingested_at), list(KEY_COLUMNS))
    return len(points)


_CREATED: set[str] = set()
_CREATE_LOCK = threading.Lock()


def ensure_tag_tables(engine: Engine, tables: Tables) -> None:
    """Create ``tags`` and ``tag_samples`` where a warehouse made before them has none
    (once per database and process; one thread at a time, as two concurrent
    ``CREATE TABLE``s of one name collide on PostgreSQL)."""
    key = f"{engine.url!r}|{tables.tags.fullname}|{tables.tag_samples.fullname}"
    with _CREATE_LOCK:
        if key in _CREATED:
            return
        with engine.begin() as conn:
            tables.tags.create(conn, checkfirst=True)
            tables.tag_samples.create(conn, checkfirst=True)
        _CREATED.add(key)


def device_tag_ids(conn: Connection, tables: Tables, cfg: DeviceConfig) -> dict[str, int]:
    """Register the device's tags (idempotent) and return tag name -> id."""
    ids = register_tags(conn, tables.tags, tag_infos(cfg))
    return {name: i for (_, name), i in ids.items()}
