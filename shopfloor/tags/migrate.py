"""``shopfloor db init --upgrade``: the three-measure rows of ``temperature_raw`` become
tag samples (docs/tags.md, "Moving an installation to tags").

Each location's column ``temperature`` / ``humidity`` / ``pcv_temperature`` is one tag
of the pseudo-device ``loc:<loc_id>`` named like the column. The rows are copied inside
the database, one ``INSERT .. SELECT`` per column and batch of a location's readings
(every value a bound parameter or a column), each batch committed on its own. A reading
already there is left out by a key anti-join, so a second run adds nothing and a run
after a crash goes on where the last committed batch ended; a reading the tag-aware
capture already wrote as its device's samples (same location and time) is left out too:
it is in ``tag_samples`` already.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    case,
    exists,
    func,
    inspect,
    literal,
    null,
    select,
    text,
    true,
)
from sqlalchemy.sql.elements import ColumnElement

from shopfloor.db.schema import Tables
from shopfloor.db.types import utcnow
from shopfloor.tags.quality import BAD, GOOD, NO_VALUE
from shopfloor.tags.registry import TagInfo, register_tags

MEASURES = ("temperature", "humidity", "pcv_temperature")
PSEUDO_PREFIX = "loc:"
BATCH_ROWS = 20_000  # readings per location and transaction (3 columns: 60 000 samples)


def pseudo_device(loc_id: str) -> str:
    """The device a location's migrated history is registered under: ``loc:<loc_id>``."""
    return f"{PSEUDO_PREFIX}{loc_id}"


def seed_tags(loc_id: str, measures: Sequence[str] = MEASURES) -> list[TagInfo]:
    """The tags of one location's ``temperature_raw`` columns."""
    return [TagInfo(name=m, device=pseudo_device(loc_id), location=loc_id, unit=None,
                    data_type="float64", description=f"temperature_raw.{m} of {loc_id}",
                    source_name=f"temperature_raw.{m}") for m in measures]


@dataclass
class MigrationReport:
    """What one migration did: samples added per column, tags created, batches."""

    samples: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MEASURES, 0))
    tags_created: int = 0
    locations: int = 0
    batches: int = 0
    readings: int = 0  # rows of temperature_raw seen

    def lines(self) -> list[str]:
        per = ", ".join(f"{m} {n}" for m, n in self.samples.items())
        return [f"tag samples from temperature_raw: {per} "
                f"({sum(self.samples.values())} added, {self.readings} readings, "
                f"{self.locations} locations, {self.batches} batches)",
                f"tags created: {self.tags_created}"]


def _present(engine: Engine, tables: Tables) -> set[str]:
    """The raw table's columns as the database has them (a view may lack some)."""
    raw = tables.temperature_raw
    insp = inspect(engine)
    if not insp.has_table(raw.name, schema=raw.schema) and \
            raw.name not in insp.get_view_names(schema=raw.schema):
        return set()
    return {c["name"].lower() for c in insp.get_columns(raw.name, schema=raw.schema)}


def _ensure_tags(conn: Connection, tables: Tables, loc_id: str, measures: Sequence[str],
                 now: datetime) -> tuple[dict[str, int], int]:
    """The location's seed tags (name -> id), registered where missing; and how many
    were created. Existing tags are not touched (a rerun changes nothing)."""
    tags = tables.tags
    device = pseudo_device(loc_id)
    have = dict(conn.execute(select(tags.c.name, tags.c.id)
                             .where(tags.c.device == device)).all())
    missing = [t for t in seed_tags(loc_id, measures) if t.name not in have]
    if missing:
        have.update({name: i for (_, name), i in
                     register_tags(conn, tags, missing, now).items()})
    return {m: int(have[m]) for m in measures}, len(missing)


def _captured_ids(conn: Connection, tables: Tables, loc_id: str) -> list[int]:
    """Ids of the real devices' tags at ``loc_id``: a reading they have a sample of was
    written by the tag-aware capture (raw row and samples in one transaction)."""
    tags = tables.tags
    return [int(i) for (i,) in conn.execute(
        select(tags.c.id).where(tags.c.location == loc_id,
                                ~tags.c.device.startswith(PSEUDO_PREFIX, autoescape=True)))]


def _upper_bound(conn: Connection, tables: Tables, loc_id: str, after: datetime | None,
                 batch_rows: int) -> datetime | None:
    """The capture time of the ``batch_rows``-th reading of ``loc_id`` after ``after``
    (None: fewer are left, the batch takes them all)."""
    raw = tables.temperature_raw
    query = select(raw.c.capture_dt).where(raw.c.loc_id == loc_id)
    if after is not None:
        query = query.where(raw.c.capture_dt > after)
    query = query.order_by(raw.c.capture_dt).offset(batch_rows - 1).limit(1)
    return conn.execute(query).scalar()


def _insert(tables: Tables, loc_id: str, measure: str, tag_id: int,
            window: ColumnElement, captured: Sequence[int], ingested_at: ColumnElement):
    """``INSERT INTO tag_samples .. SELECT`` of one column of one location's window,
    leaving out the readings already there (this tag's, or the capture's)."""
    raw, s = tables.temperature_raw, tables.tag_samples
    value = raw.c[measure]
    done = s.alias("done")
    skip = exists().where(done.c.tag_id == tag_id, done.c.ts == raw.c.capture_dt)
    if captured:
        live = s.alias("live")
        skip = skip | exists().where(live.c.tag_id.in_(captured),
                                     live.c.ts == raw.c.capture_dt)
    query = select(
        literal(tag_id, s.c.tag_id.type), raw.c.capture_dt, value,
        null(),  # text_value
        case((value.is_(None), literal(BAD, s.c.quality.type)),
             else_=literal(GOOD, s.c.quality.type)),
        case((value.is_(None), literal(NO_VALUE, s.c.reason.type)), else_=null()),
        ingested_at,
    ).where(raw.c.loc_id == loc_id, window, ~skip)
    return s.insert().from_select(
        ["tag_id", "ts", "value", "text_value", "quality", "reason", "ingested_at"], query)


def migrate_raw(engine: Engine, tables: Tables, batch_rows: int = BATCH_ROWS,
                after_batch: Callable[[str, int], None] | None = None) -> MigrationReport:
    """Copy every reading of ``temperature_raw`` into ``tag_samples`` (see the module).

    Args:
        batch_rows: readings of one location per transaction.
        after_batch: called with ``(loc_id, batch number)`` after each committed batch
            (tests stop a migration half-way there).
    """
    report = MigrationReport()
    present = _present(engine, tables)
    measures = [m for m in MEASURES if m in present]
    if not measures or not {"loc_id", "capture_dt"} <= present:
        return report
    raw = tables.temperature_raw
    now = utcnow()
    with engine.connect() as conn:
        locations = [loc for (loc,) in conn.execute(
            select(raw.c.loc_id).distinct().order_by(raw.c.loc_id)) if loc is not None]
    report.locations = len(locations)
    for loc_id in locations:
        with engine.begin() as conn:
            ids, created = _ensure_tags(conn, tables, loc_id, measures, now)
            captured = _captured_ids(conn, tables, loc_id)
        report.tags_created += created
        after: datetime | None = None
        while True:
            # Every batch's samples are new to tag_samples now: stamped with the batch's
            # time, as every writer stamps its own, so the consumers that follow
            # ingested_at with a watermark (the tag lake export, the tag rollups) take
            # them at their next run. The reading's own, older ingested_at would lie
            # behind a watermark that moved before the migration (an export deployed
            # first, a migration resumed after a crash) and never be seen.
            ingested_at = literal(utcnow(), tables.tag_samples.c.ingested_at.type)
            with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # A seed's raw table may hold timestamptz: cast to UTC, not to the
                    # session's zone, on its way into tag_samples' UTC timestamps.
                    conn.execute(text("SET LOCAL TIME ZONE 'UTC'"))
                upper = _upper_bound(conn, tables, loc_id, after, batch_rows)
                window = and_(true(),
                              *([raw.c.capture_dt > after] if after is not None else []),
                              *([raw.c.capture_dt <= upper] if upper is not None else []))
                for measure in measures:
                    result = conn.execute(_insert(tables, loc_id, measure, ids[measure],
                                                  window, captured, ingested_at))
                    report.samples[measure] += max(result.rowcount, 0)
                report.readings += conn.execute(
                    select(func.count()).select_from(raw)
                    .where(raw.c.loc_id == loc_id, window)).scalar_one()
            report.batches += 1
            if after_batch is not None:
                after_batch(loc_id, report.batches)
            if upper is None:
                break
            after = upper
    return report

