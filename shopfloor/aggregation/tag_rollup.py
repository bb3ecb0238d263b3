"""Hourly and daily rollups of every tag (``tag_hourly``, ``tag_daily``), in the database
that holds ``tag_samples`` (docs/tags.md).

Per tag and UTC hour: every point (``sample_count``), the good ones (``good_count``,
quality 192), and over the good points that carry a number their count, sum, min, max,
avg and the first and last in time with their timestamps. Bad and uncertain points are
counted, never averaged.

Pushed down: the hours are one ``INSERT ... SELECT ... GROUP BY`` into a temporary
table (the GROUP BY computes the first and last good *times*); then each group's first
and last value is looked up in ``tag_samples`` by primary key (two index lookups per
group; no window function sorts the rows), and one ``INSERT ... SELECT ... ON CONFLICT``
upserts the groups into ``tag_hourly`` on ``(tag_id, period_start)``. Rows whose values
did not change keep their ``updated_at``. Nothing but counters comes to Python.

Which hours: the (tag, hour) pairs that received rows with ``ingested_at`` after the
watermark ``tag-rollup`` (in the same database's ``pipeline_watermark``, moved in the
same transaction), less the hourly flow's 5-minute overlap for writers that commit after
stamping ``ingested_at``. With no watermark yet, every hour of the table is rolled up
by one GROUP BY over it (no pair list). The days of those hours are then recomputed from
``tag_hourly`` alone, exactly: sums of counts and sums, min of mins, max of maxes, the
first value of the hour with the earliest ``first_ts``, the last of the latest
``last_ts``, and ``avg = sum / count`` only at the end.
"""

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    Engine,
    Float,
    FromClause,
    MetaData,
    Select,
    Table,
    Update,
    and_,
    case,
    func,
    insert,
    inspect,
    literal,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite

from shopfloor.aggregation.transfer import LATE_OVERLAP, tune_group_by
from shopfloor.db.bulk import bulk_insert
from shopfloor.db.schema import Tables
from shopfloor.db.types import UtcDateTime
from shopfloor.db.watermark import get_watermark, set_watermark
from shopfloor.tags.periods import DAY, HOUR, STEP, day_floor, floor_period, hour_floor
from shopfloor.tags.quality import GOOD

WATERMARK = "tag-rollup"
KEY = ("tag_id", "period_start")
COUNTS = ("sample_count", "good_count", "value_count")
NUMBERS = ("value_sum", "value_min", "value_max", "value_avg", "first_value", "last_value")
# The columns of tag_hourly, in table order (tag_daily has ``hours`` before updated_at).
HOURLY_COLUMNS = (*KEY, *COUNTS, "value_sum", "value_min", "value_max", "value_avg",
                  "first_ts", "first_value", "last_ts", "last_value", "updated_at")
# What the GROUP BY computes (first and last values are looked up after it).
GROUP_COLUMNS = (*KEY, *COUNTS, "value_sum", "value_min", "value_max", "value_avg",
                 "first_ts", "last_ts")
DIALECTS = ("postgresql", "sqlite", "mysql", "mariadb")
# Values this close are unchanged (the hourly aggregation's rule): a sum computed again
# over the same rows in another order may differ in its last bits.
REL_TOL = 1e-9
ALL, LATE, NOTHING, SKIPPED = "all", "late", "nothing new", "skipped"


@dataclass
class RollupStats:
    """What one rollup did (the flow's artifact shows it)."""

    mode: str = NOTHING
    """``all`` (no watermark yet: every hour), ``late`` (the pairs since the watermark),
    ``nothing new``, or ``skipped`` (no ``tag_samples`` table, a dialect without it)."""
    samples: int = 0
    """Rows ingested since the watermark (``all``: the samples of every hour)."""
    hours: int = 0
    """(tag, hour) groups aggregated."""
    hours_written: int = 0
    """Hourly rows inserted or changed (the rest were already right)."""
    days: int = 0
    """(tag, day) rows recomputed from the hours."""
    days_written: int = 0
    reason: str = ""
    watermark: datetime | None = None

    def summary(self) -> dict[str, Any]:
        """The counters for a flow's table artifact (``tag_`` prefixed)."""
        return {"tag_rollup": self.mode, "tag_samples": self.samples,
                "tag_hours": self.hours, "tag_hours_written": self.hours_written,
                "tag_days": self.days, "tag_days_written": self.days_written}


def good_number(s: FromClause) -> ColumnElement:
    """A point that counts in sums, min/max/avg and first/last: good, with a number."""
    return and_(s.c.quality == GOOD, s.c.value.is_not(None))


def hour_groups(s: FromClause, bucket: ColumnElement,
                source: FromClause | None = None) -> Select:
    """The GROUP BY per (tag, ``bucket``) over the samples ``s``: counts, sum/min/max/avg
    of the good numbers, and the times of the first and last of them."""
    num = good_number(s)
    v, t = case((num, s.c.value)), case((num, s.c.ts))
    stmt = select(
        s.c.tag_id.label("tag_id"), bucket.label("period_start"),
        func.count().label("sample_count"),
        func.sum(case((s.c.quality == GOOD, 1), else_=0)).label("good_count"),
        func.count(v).label("value_count"),
        func.sum(v).label("value_sum"), func.min(v).label("value_min"),
        func.max(v).label("value_max"), func.avg(v).label("value_avg"),
        func.min(t).label("first_ts"), func.max(t).label("last_ts"),
    ).select_from(source if source is not None else s)
    return stmt.group_by(s.c.tag_id, bucket)


def hourly_groups(samples: Table, pairs: Table | None = None) -> Select:
    """The hourly groups of every hour of ``samples``, or (``pairs``: a table of
    ``tag_id, period_start, period_end``) of those (tag, hour) pairs only, each read by
    its primary-key range; :data:`GROUP_COLUMNS`, without the first and last values."""
    if pairs is None:
        return hour_groups(samples, hour_floor(samples.c.ts))
    on = and_(samples.c.tag_id == pairs.c.tag_id, samples.c.ts >= pairs.c.period_start,
              samples.c.ts < pairs.c.period_end)
    return hour_groups(samples, pairs.c.period_start, samples.join(pairs, on))


def groups_table() -> Table:
    """A temporary table for the hourly groups, with room for their first/last values."""
    number = Float(53)
    return Table(
        f"tmp_taghours_{uuid.uuid4().hex[:12]}", MetaData(),
        Column("tag_id", BigInteger), Column("period_start", UtcDateTime),
        *(Column(c, BigInteger) for c in COUNTS),
        *(Column(c, number) for c in ("value_sum", "value_min", "value_max", "value_avg")),
        Column("first_ts", UtcDateTime), Column("last_ts", UtcDateTime),
        Column("first_value", number), Column("last_value", number),
        prefixes=["TEMPORARY"])


def first_last_update(groups: Table, samples: Table) -> Update:
    """Each group's first and last value: its earliest and latest good time looked up
    in ``samples`` by primary key (two index lookups per group, no sort of the rows)."""
    first, last = samples.alias("f"), samples.alias("l")
    return update(groups).values(
        first_value=select(first.c.value).where(
            first.c.tag_id == groups.c.tag_id, first.c.ts == groups.c.first_ts
        ).scalar_subquery(),
        last_value=select(last.c.value).where(
            last.c.tag_id == groups.c.tag_id, last.c.ts == groups.c.last_ts
        ).scalar_subquery())


def staged_select(groups: Table, now: datetime) -> Select:
    """The ``tag_hourly`` rows from the staged groups."""
    # "WHERE true" keeps SQLite from reading the upsert's ON CONFLICT as a join constraint.
    return select(*(groups.c[c] for c in HOURLY_COLUMNS[:-1]),
                  literal(now, UtcDateTime).label("updated_at")).where(true())


def daily_select(hourly: Table, now: datetime, days: Table | None = None) -> Select:
    """The ``tag_daily`` rows from ``tag_hourly`` alone: of every day, or (``days``: a
    table of ``tag_id, period_start, period_end``) of those (tag, day) pairs only."""
    h = hourly
    if days is None:
        bucket, source = day_floor(h.c.period_start), h
    else:
        bucket = days.c.period_start
        source = h.join(days, and_(h.c.tag_id == days.c.tag_id,
                                   h.c.period_start >= days.c.period_start,
                                   h.c.period_start < days.c.period_end))
    g = select(
        h.c.tag_id.label("tag_id"), bucket.label("period_start"),
        *(func.sum(h.c[c]).label(c) for c in COUNTS),
        func.sum(h.c.value_sum).label("value_sum"), func.min(h.c.value_min).label("value_min"),
        func.max(h.c.value_max).label("value_max"),
        func.min(h.c.first_ts).label("first_ts"), func.max(h.c.last_ts).label("last_ts"),
        func.count().label("hours"),
    ).select_from(source).group_by(h.c.tag_id, bucket).subquery("g")
    # The hour holding the day's first (last) good value is the hour of its time: one
    # lookup by primary key per day.
    first, last = h.alias("fh"), h.alias("lh")
    first_value = select(first.c.first_value).where(
        first.c.tag_id == g.c.tag_id,
        first.c.period_start == hour_floor(g.c.first_ts)).scalar_subquery()
    last_value = select(last.c.last_value).where(
        last.c.tag_id == g.c.tag_id,
        last.c.period_start == hour_floor(g.c.last_ts)).scalar_subquery()
    avg = case((g.c.value_count > 0, g.c.value_sum / g.c.value_count))
    return select(
        g.c.tag_id, g.c.period_start, *(g.c[c] for c in COUNTS),
        g.c.value_sum, g.c.value_min, g.c.value_max, avg.label("value_avg"),
        g.c.first_ts, first_value.label("first_value"), g.c.last_ts,
        last_value.label("last_value"), g.c.hours,
        literal(now, UtcDateTime).label("updated_at"),
    ).select_from(g).where(true())


def _differs(old: ColumnElement, new: ColumnElement, number: bool) -> ColumnElement:
    """Changed: NULL on one side only, or (numbers) more than :data:`REL_TOL` apart."""
    if not number:
        return old.is_distinct_from(new)
    one_null = or_(and_(old.is_(None), new.is_not(None)), and_(old.is_not(None), new.is_(None)))
    return or_(one_null, func.abs(old - new) > REL_TOL * (func.abs(old) + func.abs(new)))


def upsert_select(conn: Connection, table: Table, stmt: Select) -> None:
    """``INSERT INTO table SELECT ...`` upserted on ``(tag_id, period_start)``; a row
    whose values did not change is left as it was, ``updated_at`` included."""
    columns = [c.name for c in stmt.selected_columns]
    values = [c for c in columns if c not in KEY and c != "updated_at"]
    if conn.dialect.name in ("mysql", "mariadb"):
        ins = mysql.insert(table).from_select(columns, stmt)
        changed = or_(*(_differs(table.c[c], ins.inserted[c], c in NUMBERS) for c in values))
        # MySQL assigns left to right, later ones seeing the new values: updated_at first.
        ins = ins.on_duplicate_key_update([
            ("updated_at", case((changed, ins.inserted.updated_at), else_=table.c.updated_at)),
            *((c, ins.inserted[c]) for c in values)])
        conn.execute(ins)
        return
    mod = postgresql if conn.dialect.name == "postgresql" else sqlite
    ins = mod.insert(table).from_select(columns, stmt)
    changed = or_(*(_differs(table.c[c], ins.excluded[c], c in NUMBERS) for c in values))
    conn.execute(ins.on_conflict_do_update(
        index_elements=list(KEY), set_={c: ins.excluded[c] for c in [*values, "updated_at"]},
        where=changed))


def period_table() -> Table:
    """A temporary table of (tag, period) pairs: ``tag_id, period_start, period_end``."""
    return Table(f"tmp_tagroll_{uuid.uuid4().hex[:12]}", MetaData(),
                 Column("tag_id", BigInteger), Column("period_start", UtcDateTime),
                 Column("period_end", UtcDateTime), prefixes=["TEMPORARY"])


def _naive(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo is not None else ts


def period_rows(pairs: Iterable[tuple[int, datetime]], unit: str) -> list[tuple[Any, ...]]:
    """``(tag_id, period_start, period_end)`` rows (naive UTC) of the distinct (tag,
    period) that ``pairs`` of (tag, any time in it) fall in, sorted."""
    out = {(int(tag), floor_period(_naive(ts), unit)) for tag, ts in pairs}
    return [(tag, start, start + STEP[unit]) for tag, start in sorted(out)]


def _staged(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> Table:
    tmp = period_table()
    tmp.create(conn)
    bulk_insert(conn, tmp, ["tag_id", "period_start", "period_end"], rows)
    if conn.dialect.name == "postgresql":  # else the planner knows nothing of its size
        conn.execute(text(f"ANALYZE {conn.dialect.identifier_preparer.format_table(tmp)}"))
    return tmp


def _written(conn: Connection, table: Table, now: datetime, periods: Table | None) -> int:
    """Rows of ``table`` this run inserted or changed (they carry its ``updated_at``)."""
    stmt = select(func.count()).select_from(table).where(
        table.c.updated_at == literal(now, UtcDateTime))
    if periods is not None:
        stmt = stmt.select_from(table.join(periods, and_(
            table.c.tag_id == periods.c.tag_id,
            table.c.period_start == periods.c.period_start)))
    return int(conn.execute(stmt).scalar_one())


def new_pairs_select(samples: Table, since: datetime) -> Select:
    """Per (tag, UTC hour) that received rows ingested after ``since``: how many, and
    the latest ``ingested_at`` (the ``ingested_at`` index finds them)."""
    bucket = hour_floor(samples.c.ts)
    return (select(samples.c.tag_id, bucket.label("period_start"),
                   func.count().label("n"), func.max(samples.c.ingested_at).label("upto"))
            .where(samples.c.ingested_at > since).group_by(samples.c.tag_id, bucket))


def has_samples(engine: Engine, tables: Tables) -> bool:
    """Whether the database holds the ``tag_samples`` table."""
    t = tables.tag_samples
    with engine.connect() as conn:
        return inspect(conn).has_table(t.name, schema=t.schema)


def ensure_rollup_tables(engine: Engine, tables: Tables) -> None:
    """Create ``tag_hourly``, ``tag_daily`` and ``pipeline_watermark`` beside
    ``tag_samples`` where they are missing (a database made before them)."""
    with engine.begin() as conn:
        for t in (tables.tag_hourly, tables.tag_daily, tables.pipeline_watermark):
            t.create(conn, checkfirst=True)


def _tune(conn: Connection) -> None:
    """Settings of the rollup's transaction: ``work_mem`` as the hourly aggregation's
    and, on PostgreSQL, Memoize off: each (tag, hour) pair is read once by its key
    range, and a cache over them never hits (it cost a third of the late path's time)."""
    tune_group_by(conn)
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.set_config("enable_memoize", "off", True)))


def _no_jit(conn: Connection) -> None:
    """JIT off for the rest of the transaction (PostgreSQL), after the GROUP BY: what
    follows reads a few rows per group, but the planner guesses ten times the real
    groups, and compiling the lookups took longer than running them (1.0 s for a 0.7 s
    rollup of 2 M samples)."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.set_config("jit", "off", True)))


def write_hours(conn: Connection, tables: Tables, now: datetime,
                pairs: Table | None = None) -> Table:
    """Aggregate the hours (all, or the ``pairs``) into a temporary table by one
    ``INSERT ... SELECT ... GROUP BY``, add their first and last values, and upsert them
    into ``tag_hourly``. Returns the temporary table (the caller counts and drops it)."""
    groups = groups_table()
    groups.create(conn)
    conn.execute(insert(groups).from_select(list(GROUP_COLUMNS),
                                            hourly_groups(tables.tag_samples, pairs)))
    _no_jit(conn)
    conn.execute(first_last_update(groups, tables.tag_samples))
    upsert_select(conn, tables.tag_hourly, staged_select(groups, now))
    return groups


def _lock(conn: Connection, tables: Tables) -> None:
    """On PostgreSQL one rollup at a time per table (two would each refresh a day from
    hours the other has not committed yet); the second waits, then sees the first's."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(
            f"shopfloor:{WATERMARK}:{tables.tag_hourly.fullname}", 0))))


def roll_up_database(engine: Engine, tables: Tables, now: datetime) -> RollupStats:
    """The rollup step of a run on the database of ``tag_samples`` (the hourly flow's
    source): skipped where there is no ``tag_samples`` table (a plant without tag
    capture, the seed's source), otherwise the rollup tables are created where missing
    and :func:`roll_up` runs in one transaction."""
    if engine.dialect.name not in DIALECTS:
        return RollupStats(SKIPPED, reason=f"no tag rollups on {engine.dialect.name}")
    if not has_samples(engine, tables):
        return RollupStats(SKIPPED, reason=f"no table {tables.tag_samples.fullname}")
    ensure_rollup_tables(engine, tables)
    with engine.begin() as conn:
        return roll_up(conn, tables, now)


def roll_up(conn: Connection, tables: Tables, now: datetime) -> RollupStats:
    """Roll up the hours that received samples since the watermark, and their days, in
    the caller's transaction (on the database of ``tag_samples``), and move the
    watermark in it. A rerun with nothing new writes nothing."""
    if conn.dialect.name not in DIALECTS:
        return RollupStats(SKIPPED, reason=f"no tag rollups on {conn.dialect.name}")
    _lock(conn, tables)
    stored = get_watermark(conn, tables, WATERMARK)
    if stored is None:
        stats = _roll_up_all(conn, tables, now)
    else:
        stats = _roll_up_late(conn, tables, now, datetime.fromisoformat(stored) - LATE_OVERLAP)
    if stats.watermark is not None and (
            stored is None or datetime.fromisoformat(stored) < stats.watermark):
        set_watermark(conn, tables, WATERMARK, stats.watermark.isoformat())
    return stats


def _roll_up_all(conn: Connection, tables: Tables, now: datetime) -> RollupStats:
    """No watermark yet: every hour of the table, by one GROUP BY over it."""
    s, h = tables.tag_samples, tables.tag_hourly
    upto = conn.execute(select(func.max(s.c.ingested_at))).scalar_one()
    if upto is None:
        return RollupStats(NOTHING)
    _tune(conn)
    groups = write_hours(conn, tables, now)
    upsert_select(conn, tables.tag_daily, daily_select(h, now))
    hours, samples = conn.execute(
        select(func.count(), func.sum(groups.c.sample_count))).one()
    days = conn.execute(select(func.count()).select_from(tables.tag_daily)).scalar_one()
    stats = RollupStats(ALL, int(samples or 0), int(hours), _written(conn, h, now, groups),
                        int(days), _written(conn, tables.tag_daily, now, None),
                        watermark=upto)
    groups.drop(conn)
    return stats


def _roll_up_late(conn: Connection, tables: Tables, now: datetime,
                  since: datetime) -> RollupStats:
    """The (tag, hour) pairs with rows ingested after ``since``, and their days."""
    found = conn.execute(new_pairs_select(tables.tag_samples, since)).all()
    if not found:
        return RollupStats(NOTHING)
    _tune(conn)
    hours = _staged(conn, period_rows(((r.tag_id, r.period_start) for r in found), HOUR))
    days = _staged(conn, period_rows(((r.tag_id, r.period_start) for r in found), DAY))
    groups = write_hours(conn, tables, now, hours)
    upsert_select(conn, tables.tag_daily, daily_select(tables.tag_hourly, now, days))
    stats = RollupStats(LATE, sum(int(r.n) for r in found), len(found),
                        _written(conn, tables.tag_hourly, now, groups),
                        int(conn.execute(select(func.count()).select_from(days)).scalar_one()),
                        _written(conn, tables.tag_daily, now, days),
                        watermark=max(r.upto for r in found))
    for tmp in (groups, hours, days):
        tmp.drop(conn)
    return stats
