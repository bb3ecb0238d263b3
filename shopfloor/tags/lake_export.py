"""The warehouse's tag samples in the lake, long format, one folder per tag and month.

``<prefix>/tag_id=<id>/month=<YYYY-MM>/part-<token>-<first>-<last>.parquet`` with the
columns of :data:`SCHEMA` (``first``/``last``: the file's earliest and latest ``ts`` in
epoch microseconds), rows sorted by ``ts``, so one tag's month is one folder.

**Incremental.** A run exports the samples with ``ingested_at`` in ``(watermark, upto]``,
``upto`` = the run's time less a safety lag (writers stamp ``ingested_at`` before they
commit: a transaction still open at the run is not skipped as long as it lasts less than
the lag), whatever month their ``ts`` is in. The watermark ``tag-lake-export:<prefix>``
lives in the warehouse's ``pipeline_watermark``.

**Each (tag_id, ts) once.** For each (tag, month) the batch touches:

- *append* (the normal case: new samples are later than everything in the partition):
  when the batch's first ``ts`` is after the partition's last (read from the file names;
  from the footers for the maintenance's merged files), its rows go in a new file;
- *upsert* (a replayed sample, a late one inside the exported range, a run repeated
  after a crash): the partition's visible rows are read, those whose ``ts`` is in the
  batch are dropped, the batch is added, and the result replaces every file of the
  partition. The batch holds the newest version (the warehouse upserts on the key).

**Exactly once under crashes.** Every file of a run is staged, then published by the
extraction's replace (:mod:`shopfloor.historian.publish`: a manifest under
``_extraction/<prefix>/``, one commit point, roll-forward of a manifest a crash left),
which every lake-protocol reader and the lake maintenance already honour. The watermark
moves after the publish; a crash between the two makes the next run export the same
batch again, which then overlaps what is in the lake and is upserted: same content.
"""

import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import Connection, DateTime, Engine, and_, func, select, type_coerce

from shopfloor.db.schema import Tables
from shopfloor.db.watermark import get_watermark, set_watermark
from shopfloor.errors import ShopfloorError
from shopfloor.historian import publish
from shopfloor.lake import protocol
from shopfloor.lake.merge import pending_partitions
from shopfloor.outcome import COMPLETED, Verdict
from shopfloor.storage import StorageLocation
from shopfloor.storage_engines import attach_duckdb

DEFAULT_PREFIX = "tag_samples"
DEFAULT_LAG = timedelta(minutes=5)
WATERMARK = "tag-lake-export"
COLUMNS = ("tag_id", "ts", "value", "text_value", "quality", "reason", "ingested_at")
SCHEMA = pa.schema([
    ("tag_id", pa.int64()),
    ("ts", pa.timestamp("us", tz="UTC")),
    ("value", pa.float64()),
    ("text_value", pa.string()),
    ("quality", pa.int16()),
    ("reason", pa.string()),
    ("ingested_at", pa.timestamp("us", tz="UTC")),
])
ROW_GROUP_ROWS = 100_000
# part-<token>-<first ts>-<last ts>.parquet: the last two numbers are the file's range.
_RANGE = re.compile(r"^part-.+-(\d{1,20})-(\d{1,20})\.parquet$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Fault = Callable[[str], None]


def no_fault(step: str) -> None:
    """The default fault hook: nothing happens."""


def watermark_name(prefix: str) -> str:
    """The watermark of one output prefix (two lakes or prefixes export independently)."""
    return f"{WATERMARK}:{prefix}"


def month_of(ts: datetime) -> str:
    """``YYYY-MM`` of a UTC instant."""
    return ts.astimezone(UTC).strftime("%Y-%m")


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """``[start, end)`` of a ``YYYY-MM`` month, in UTC."""
    start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def months_between(first: datetime, last: datetime) -> list[str]:
    """Every month from the one of ``first`` to the one of ``last``."""
    out, month = [], month_of(first)
    while month <= month_of(last):
        out.append(month)
        month = month_of(month_bounds(month)[1])
    return out


def partition_key(prefix: str, tag_id: int, month: str) -> str:
    """``<prefix>/tag_id=<id>/month=<YYYY-MM>``."""
    return f"{prefix}/tag_id={int(tag_id)}/month={month}"


def micros(ts: datetime) -> int:
    """Epoch microseconds of an aware instant (exact: no float)."""
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def file_range(key: str) -> tuple[int, int] | None:
    """The ``(first, last)`` ts in epoch microseconds a file's name states, if it does."""
    m = _RANGE.search(key.rsplit("/", 1)[-1])
    return (int(m.group(1)), int(m.group(2))) if m else None


@dataclass
class ExportStats:
    """What one run did (the flow's artifact and summary)."""

    samples: int = 0
    tags: int = 0
    partitions: int = 0
    files: int = 0
    appended: int = 0
    upserted: int = 0
    replaced_files: int = 0
    recovered: int = 0
    since: datetime | None = None
    upto: datetime | None = None
    watermark: datetime | None = None
    touched: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"samples": self.samples, "tags": self.tags, "partitions": self.partitions,
                "files": self.files, "appended": self.appended, "upserted": self.upserted,
                "replaced_files": self.replaced_files, "recovered": self.recovered,
                "since": self.since.isoformat() if self.since else None,
                "watermark": self.watermark.isoformat() if self.watermark else None}


def to_table(rows: Sequence[Any]) -> pa.Table:
    """Warehouse rows (``COLUMNS`` in order) as an Arrow table of :data:`SCHEMA`; naive
    times are taken as UTC (pyarrow's rule), aware ones converted."""
    cols = list(zip(*rows, strict=True)) if rows else [[] for _ in COLUMNS]
    return pa.table([pa.array(list(c), type=f.type) for c, f in zip(cols, SCHEMA, strict=True)],
                    schema=SCHEMA)


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=ROW_GROUP_ROWS, compression="zstd")
    return buf.getvalue()


class _Lake:
    """DuckDB over the lake, for reading partitions back (upserts, merged files' ranges)."""

    def __init__(self, lake: StorageLocation) -> None:
        self.lake = lake
        self._con: duckdb.DuckDBPyConnection | None = None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self._con = duckdb.connect()
            attach_duckdb(self._con, [self.lake])
        return self._con

    def close(self) -> None:
        if self._con is not None:
            self._con.close()

    def last_ts(self, files: Sequence[str]) -> int | None:
        """The latest ``ts`` (epoch us) of these files: from their names, else footers."""
        named = [file_range(k) for k in files]
        last = [r[1] for r in named if r is not None]
        others = [k for k, r in zip(files, named, strict=True) if r is None]
        if others:
            got = self.con.execute(
                "SELECT epoch_us(max(ts)) FROM read_parquet($f, union_by_name=true, "
                "hive_partitioning=false)", {"f": [self.lake.url(k) for k in others]}).fetchone()
            if got and got[0] is not None:
                last.append(int(got[0]))
        return max(last) if last else None

    def rows(self, files: Sequence[str]) -> pa.Table:
        """Every row of these files, as :data:`SCHEMA`."""
        sel = ", ".join(f'CAST("{f.name}" AS {_DUCK[f.name]}) AS "{f.name}"' for f in SCHEMA)
        table = self.con.execute(
            f"SELECT {sel} FROM read_parquet($f, union_by_name=true, "  # noqa: S608
            "hive_partitioning=false)", {"f": [self.lake.url(k) for k in files]},
        ).to_arrow_table()
        return table.cast(SCHEMA)


_DUCK = {"tag_id": "BIGINT", "ts": "TIMESTAMPTZ", "value": "DOUBLE", "text_value": "VARCHAR",
         "quality": "SMALLINT", "reason": "VARCHAR", "ingested_at": "TIMESTAMPTZ"}


def upsert_rows(existing: pa.Table, batch: pa.Table) -> pa.Table:
    """The partition after the batch: rows of ``existing`` whose ``ts`` is not in the
    batch, and the batch's rows (their newest version), sorted by ``ts``."""
    keep = pc.invert(pc.is_in(existing["ts"], value_set=batch["ts"]))
    merged = pa.concat_tables([existing.filter(keep), batch])
    return merged.sort_by("ts")


def _window(t: Any, since: datetime | None, upto: datetime) -> Any:
    cond = t.c.ingested_at <= upto
    return and_(t.c.ingested_at > since, cond) if since is not None else cond


def _batches(conn: Connection, tables: Tables, since: datetime | None, upto: datetime
             ) -> Iterator[tuple[int, str, pa.Table]]:
    """The samples ingested in ``(since, upto]``, one (tag, month) at a time (each read
    by its primary-key range), sorted by ``ts``."""
    t = tables.tag_samples
    window = _window(t, since, upto)
    groups = conn.execute(select(t.c.tag_id, func.min(t.c.ts), func.max(t.c.ts))
                          .where(window).group_by(t.c.tag_id).order_by(t.c.tag_id)).all()
    # Times come back naive UTC, without UtcDateTime's per-row conversion (a third of a
    # first export's time); to_table reads naive times as UTC.
    cols = [type_coerce(t.c[c], DateTime()).label(c) if c in ("ts", "ingested_at")
            else t.c[c] for c in COLUMNS]
    for tag_id, first, last in groups:
        for month in months_between(first, last):
            start, end = month_bounds(month)
            rows = conn.execute(select(*cols).where(
                t.c.tag_id == tag_id, t.c.ts >= start, t.c.ts < end, window,
            ).order_by(t.c.ts)).all()
            if rows:
                yield int(tag_id), month, to_table(rows)


class PartitionChanged(ShopfloorError):
    """A partition the run upserts changed since it was read (a merge of the lake
    maintenance): nothing is published, the next run exports the same samples again."""


def check_unchanged(lake: StorageLocation, prefix: str,
                    read: dict[str, frozenset[str]]) -> None:
    """Refuse to replace partitions whose visible files changed since they were read, or
    that a lake-maintenance merge is working on: the replace would delete the files it
    read and leave the merge's, with the same samples, beside its own. (The merge, for
    its part, checks for this run's manifest before it commits.)"""
    if not read:
        return
    busy = set(pending_partitions(lake, prefix)) & set(read)
    changed = [p for p, files in read.items()
               if frozenset(o.key for o in protocol.visible_files(lake, p)) != files]
    if busy or changed:
        raise PartitionChanged(
            f"partitions changed while exported, published nothing (the next run "
            f"exports again): {', '.join(sorted(busy | set(changed)))}")


def stored_watermark(engine: Engine, tables: Tables, prefix: str) -> datetime | None:
    with engine.connect() as conn:
        stored = get_watermark(conn, tables, watermark_name(prefix))
    return datetime.fromisoformat(stored) if stored else None


def export(engine: Engine, tables: Tables, lake: StorageLocation, prefix: str,
           now: datetime, token: str, lag: timedelta = DEFAULT_LAG,
           fault: Fault = no_fault) -> ExportStats:
    """Export the samples ingested since the watermark (see the module's doc).

    ``fault`` is the crash tests' hook, called with ``after_stage`` (staged, no
    manifest), then through the replace ``mid_publish`` (manifest written, first file
    moved), ``after_publish`` (all moved, not committed) and ``after_commit``, then
    ``before_watermark`` (published, watermark not moved).
    """
    publish.check_output_prefix(prefix)
    stats = ExportStats(recovered=publish.clean_leftovers(lake, prefix).rolled_forward)
    since = stored_watermark(engine, tables, prefix)
    upto = now.astimezone(UTC) - lag
    stats.since, stats.upto, stats.watermark = since, upto, since
    if since is not None and upto <= since:
        return stats
    layout = publish.PublishLayout(lake, prefix, publish.check_token(token))
    moves: list[list[str]] = []
    delete: list[str] = []
    read: dict[str, frozenset[str]] = {}  # upserted partition -> the files it replaces
    duck = _Lake(lake)
    tags: set[int] = set()
    try:
        with engine.connect() as conn:
            for tag_id, month, batch in _batches(conn, tables, since, upto):
                part = partition_key(prefix, tag_id, month)
                files = [o.key for o in protocol.visible_files(lake, part)]
                last = duck.last_ts(files) if files else None
                first_new = micros(batch["ts"][0].as_py())
                if last is None or first_new > last:
                    out, mode = batch, "append"
                    stats.appended += 1
                else:
                    out, mode = upsert_rows(duck.rows(files), batch), "upsert"
                    delete += files
                    read[part] = frozenset(files)
                    stats.upserted += 1
                lo, hi = micros(out["ts"][0].as_py()), micros(out["ts"][-1].as_py())
                staged = (f"{layout.staging_key}/tag_id={tag_id}/month={month}"
                          f"/part-{lo}-{hi}.parquet")
                lake.write_bytes(staged, parquet_bytes(out))
                moves.append([staged, layout.final_key(staged)])
                tags.add(tag_id)
                stats.samples += batch.num_rows
                stats.touched.append({"partition": part, "mode": mode,
                                      "samples": batch.num_rows, "rows": out.num_rows,
                                      "files_replaced": len(files) if mode == "upsert" else 0})
    except BaseException:
        publish.discard(layout)
        raise
    finally:
        duck.close()
    stats.tags, stats.partitions, stats.files = len(tags), len(moves), len(moves)
    if moves:
        fault("after_stage")
        manifest = {"token": layout.token, "staging": layout.staging_key,
                    "moves": moves, "delete": sorted(set(delete))}
        try:
            check_unchanged(lake, prefix, read)
            stats.replaced_files = publish.replace(
                layout, manifest, after_first_move=lambda: fault("mid_publish"), fault=fault)
        except BaseException:
            publish.discard(layout)  # keeps the staging once the manifest is written
            raise
    fault("before_watermark")
    with engine.begin() as conn:
        current = get_watermark(conn, tables, watermark_name(prefix))
        if current is None or datetime.fromisoformat(current) < upto:  # never backward
            set_watermark(conn, tables, watermark_name(prefix), upto.isoformat())
    stats.watermark = upto
    return stats


def export_rows(stats: ExportStats) -> list[dict[str, Any]]:
    """The flow's table artifact: a total row, then one row per partition written."""
    total = {"partition": "(all)", "mode": f"{stats.appended} appended, "
             f"{stats.upserted} upserted", "samples": stats.samples,
             "tags": stats.tags, "partitions": stats.partitions, "files": stats.files,
             "files_replaced": stats.replaced_files}
    return [total, *({**p, "tags": 1, "partitions": 1, "files": 1} for p in stats.touched)]


def _utc_text(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _nothing_ingested(since: datetime | None, upto: datetime | None) -> str:
    """What an idle run looked at, in words: the first run has no watermark yet (it
    looked at everything up to its time less the lag)."""
    if upto is None:
        return "no tag samples ingested"
    if since is None:
        return f"no tag samples ingested up to {_utc_text(upto)} UTC (first run)"
    return f"no tag samples ingested from {_utc_text(since)} to {_utc_text(upto)} UTC"


def export_verdict(stats: ExportStats) -> Verdict:
    """Idle when nothing was ingested since the last run, else completed (with a note
    when a crashed run's export was rolled forward)."""
    if not stats.samples:
        return Verdict("idle", _nothing_ingested(stats.since, stats.upto))
    if stats.recovered:
        return Verdict("completed", f"rolled forward {stats.recovered} crashed export(s)")
    return COMPLETED
