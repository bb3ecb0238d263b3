"""A deterministic synthetic historian for the demo, the tests and the benchmark.

Tag ``i`` (ids from 1) is ``line{i % lines + 1}/sensor_{i:04d}``; odd ids are float tags,
even ids integer tags. Every tag has a reading every ``interval_s`` seconds from
``start`` (inclusive) to ``end`` (exclusive); reading ``k`` of tag ``i`` is bad
(dataintegrity 0) when ``(k + i) % bad_every == 0``, else good (192). PostgreSQL is
filled server-side with ``generate_series``; other databases get batched inserts.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Engine,
    case,
    column,
    delete,
    func,
    insert,
    literal,
    select,
    true,
)

from shopfloor.db.schema import Tables, historian_data_table
from shopfloor.db.upsert import upsert
from shopfloor.historian.plan import table_name

GOOD, BAD = 192, 0


@dataclass(frozen=True)
class HistorianSeed:
    """What to generate: ``n_tags`` tags over ``[start, end)`` every ``interval_s`` seconds."""

    start: datetime
    end: datetime
    n_tags: int = 300
    interval_s: int = 3600
    bad_every: int = 10
    lines: int = 4
    table_pattern: str = "sqlt_data_1_{yyyy}_{mm}"

    @property
    def step_ms(self) -> int:
        return self.interval_s * 1000

    @property
    def origin_ms(self) -> int:
        return int(self.start.astimezone(UTC).timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        return int(self.end.astimezone(UTC).timestamp() * 1000)


def tag_rows(seed: HistorianSeed) -> list[dict]:
    return [
        {"id": i, "tagpath": f"line{i % seed.lines + 1}/sensor_{i:04d}",
         "datatype": 1 if i % 2 else 0, "created": seed.origin_ms, "retired": None}
        for i in range(1, seed.n_tags + 1)
    ]


def month_ranges(seed: HistorianSeed) -> Iterator[tuple[str, int, int]]:
    """``(table, first_ms, end_ms)`` for each month the seed touches (first on the grid)."""
    start = seed.start.astimezone(UTC)
    year, month = start.year, start.month
    while True:
        lo = int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        hi = int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)
        lo, hi = max(lo, seed.origin_ms), min(hi, seed.end_ms)
        if lo >= seed.end_ms:
            return
        first = seed.origin_ms + -(-(lo - seed.origin_ms) // seed.step_ms) * seed.step_ms
        if first < hi:
            yield table_name(seed.table_pattern, *_ym(lo)), first, hi


def _ym(ms: int) -> tuple[int, int]:
    d = datetime.fromtimestamp(ms / 1000, UTC)
    return d.year, d.month


def reading(seed: HistorianSeed, tag_id: int, t_ms: int) -> dict:
    """The one reading of tag ``tag_id`` at ``t_ms`` (the formula the SQL path uses too)."""
    k = (t_ms - seed.origin_ms) // seed.step_ms
    bad = seed.bad_every > 0 and (k + tag_id) % seed.bad_every == 0
    is_float = tag_id % 2 == 1
    return {
        "tagid": tag_id,
        "intvalue": None if is_float else (k + tag_id) % 100,
        "floatvalue": 20.0 + tag_id % 10 + (k % 60) / 10.0 if is_float else None,
        "stringvalue": None, "datevalue": None,
        "dataintegrity": BAD if bad else GOOD,
        "t_stamp": t_ms,
    }


def seed_historian(engine: Engine, tables: Tables, seed: HistorianSeed) -> dict[str, int]:
    """Create and (re)fill the tag table and the monthly tables; returns rows per table.

    Safe to repeat: the seed's tags are upserted and each monthly table's rows inside
    the seeded range are deleted before being written again.
    """
    counts: dict[str, int] = {}
    tables.sqlth_te.create(engine, checkfirst=True)
    with engine.begin() as conn:
        upsert(conn, tables.sqlth_te, tag_rows(seed), ["id"])
    for name, first, hi in month_ranges(seed):
        data = historian_data_table(tables, name)
        data.create(engine, checkfirst=True)
        with engine.begin() as conn:
            conn.execute(delete(data).where(data.c.t_stamp >= first, data.c.t_stamp < hi))
            if engine.dialect.name == "postgresql":
                counts[name] = _fill_server_side(conn, tables, data, seed, first, hi)
            else:
                counts[name] = _fill_batched(conn, data, seed, first, hi)
    return counts


def _fill_batched(conn, data, seed: HistorianSeed, first: int, hi: int,
                  batch: int = 20_000) -> int:
    rows, total = [], 0
    for t_ms in range(first, hi, seed.step_ms):
        rows.extend(reading(seed, i, t_ms) for i in range(1, seed.n_tags + 1))
        if len(rows) >= batch:
            conn.execute(insert(data), rows)
            total, rows = total + len(rows), []
    if rows:
        conn.execute(insert(data), rows)
    return total + len(rows)


def _fill_server_side(conn, tables: Tables, data, seed: HistorianSeed,
                      first: int, hi: int) -> int:
    te = tables.sqlth_te
    ts = (func.generate_series(first, hi - 1, seed.step_ms)
          .table_valued(column("t", BigInteger)).render_derived(name="ts"))
    k = (ts.c.t - seed.origin_ms) // seed.step_ms
    is_float = te.c.id % 2 == 1
    bad = (k + te.c.id) % seed.bad_every == 0 if seed.bad_every > 0 else literal(False)
    query = (
        select(
            te.c.id,
            case((is_float, None), else_=(k + te.c.id) % 100),
            case((is_float, 20.0 + te.c.id % 10 + (k % 60) / 10.0), else_=None),
            case((bad, BAD), else_=GOOD),
            ts.c.t,
        )
        .select_from(te.join(ts, true()))
        .where(te.c.id <= seed.n_tags)
    )
    cols = ["tagid", "intvalue", "floatvalue", "dataintegrity", "t_stamp"]
    result = conn.execute(insert(data).from_select(cols, query))
    return int(result.rowcount)
