"""Tag rollups (tag_hourly, tag_daily) on real SQLite, PostgreSQL and MariaDB: every
aggregate against Python on random samples of mixed quality, late rows re-aggregating
only their hour and day, the days equal to a rollup straight from the samples, reruns."""

import math
import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, delete, insert, select

from shopfloor.aggregation.tag_rollup import ALL, LATE, NOTHING, WATERMARK, roll_up
from shopfloor.db.engine import init_db, make_engine
from shopfloor.db.schema import Tables
from shopfloor.tags.quality import BAD, GOOD, UNCERTAIN

START = datetime(2024, 3, 9, 20, tzinfo=UTC)  # two UTC midnights inside the data
SPAN = timedelta(hours=52)
INGESTED = datetime(2024, 3, 12, tzinfo=UTC)  # the first batch's ingested_at (latest)
TAGS = (1, 2, 3, 7, 40)
TEXT_TAG = 7  # good points without a number (a string tag)


def samples(n: int, seed: int, start: datetime = START, span: timedelta = SPAN,
            tags: tuple[int, ...] = TAGS, ingested: datetime = INGESTED) -> list[dict]:
    """Random points at random times; quality mixed; values multiples of 1/8 so every sum
    and average is exact in doubles and the databases must match Python bit for bit."""
    rnd, seen, out = random.Random(seed), set(), []
    while len(out) < n:
        tag = rnd.choice(tags)
        ts = start + timedelta(microseconds=rnd.randrange(int(span.total_seconds() * 1e6)))
        ts = ts.replace(microsecond=ts.microsecond // 1000 * 1000)
        if (tag, ts) in seen:
            continue
        seen.add((tag, ts))
        quality = rnd.choices((GOOD, UNCERTAIN, BAD), (7, 1, 2))[0]
        value = None if tag == TEXT_TAG or rnd.random() < 0.05 else rnd.randint(-800, 800) / 8
        out.append({"tag_id": tag, "ts": ts, "value": value,
                    "text_value": "RUN" if tag == TEXT_TAG else None, "quality": quality,
                    "reason": None if quality == GOOD else "test",
                    # ingested in time order, the last at ``ingested``
                    "ingested_at": ingested - (start + span - ts)})
    return out


def expected(points: list[dict], unit: str) -> dict[tuple, dict]:
    """The rollup computed in Python straight from the points (also for days)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for p in points:
        ts = p["ts"]
        period = (ts.replace(minute=0, second=0, microsecond=0) if unit == "hour"
                  else ts.replace(hour=0, minute=0, second=0, microsecond=0))
        groups[(p["tag_id"], period)].append(p)
    out = {}
    for key, pts in groups.items():
        good = [p for p in pts if p["quality"] == GOOD]
        nums = sorted((p["ts"], p["value"]) for p in good if p["value"] is not None)
        values = [v for _, v in nums]
        total = math.fsum(values) if values else None
        out[key] = {
            "sample_count": len(pts), "good_count": len(good), "value_count": len(values),
            "value_sum": total, "value_min": min(values) if values else None,
            "value_max": max(values) if values else None,
            "value_avg": total / len(values) if values else None,
            "first_ts": nums[0][0] if nums else None, "first_value": nums[0][1] if nums else None,
            "last_ts": nums[-1][0] if nums else None, "last_value": nums[-1][1] if nums else None,
        }
    return out


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def tag_db(request, tmp_path) -> Iterator[tuple[Engine, Tables]]:
    if request.param == "sqlite":
        url = f"sqlite+pysqlite:///{tmp_path / 'tags.db'}"
    else:
        url = request.getfixturevalue("pg_url" if request.param == "postgresql"
                                      else "mariadb_url")
    engine = make_engine(url)
    tables = init_db(engine)
    _clean(engine, tables)
    yield engine, tables
    _clean(engine, tables)
    engine.dispose()


def _clean(engine: Engine, tables: Tables) -> None:
    with engine.begin() as conn:
        for t in (tables.tag_samples, tables.tag_hourly, tables.tag_daily,
                  tables.pipeline_watermark):
            conn.execute(delete(t))


def _insert(engine: Engine, tables: Tables, points: list[dict]) -> None:
    with engine.begin() as conn:
        conn.execute(insert(tables.tag_samples), points)


def _run(engine: Engine, tables: Tables, now: datetime):
    with engine.begin() as conn:
        return roll_up(conn, tables, now)


def _table(engine: Engine, tables: Tables, unit: str) -> dict[tuple, dict]:
    t = tables.tag_hourly if unit == "hour" else tables.tag_daily
    with engine.connect() as conn:
        return {(r["tag_id"], r["period_start"]): dict(r)
                for r in conn.execute(select(t)).mappings()}


def _values(rows: dict[tuple, dict]) -> dict[tuple, dict]:
    drop = ("tag_id", "period_start", "updated_at", "hours")
    return {k: {c: v for c, v in r.items() if c not in drop} for k, r in rows.items()}


def _assert_matches(engine: Engine, tables: Tables, points: list[dict]) -> None:
    for unit in ("hour", "day"):
        assert _values(_table(engine, tables, unit)) == expected(points, unit), unit


def test_every_aggregate_matches_python_and_days_equal_the_rollup_from_the_samples(tag_db):
    engine, tables = tag_db
    points = samples(3000, seed=11)
    _insert(engine, tables, points)
    stats = _run(engine, tables, datetime(2024, 3, 12, 1, tzinfo=UTC))
    assert stats.mode == ALL and stats.samples == len(points)
    hours, days = expected(points, "hour"), expected(points, "day")
    assert (stats.hours, stats.hours_written, stats.days, stats.days_written) == (
        len(hours), len(hours), len(days), len(days))
    # bit for bit: counts, sums, min/max, averages, first/last values and times
    _assert_matches(engine, tables, points)
    daily = _table(engine, tables, "day")
    assert {k: r["hours"] for k, r in daily.items()} == {
        k: len({h for (t, h) in hours if t == k[0] and h.date() == k[1].date()}) for k in days}
    text_day = next(r for (t, _), r in daily.items() if t == TEXT_TAG)
    assert text_day["good_count"] > 0 and text_day["value_count"] == 0
    assert text_day["value_sum"] is None and text_day["first_ts"] is None
    with engine.connect() as conn:
        mark = conn.execute(select(tables.pipeline_watermark.c.value).where(
            tables.pipeline_watermark.c.name == WATERMARK)).scalar_one()
    assert datetime.fromisoformat(mark) == max(p["ingested_at"] for p in points)


def test_late_rows_reaggregate_only_their_hour_and_day_and_a_rerun_adds_nothing(tag_db):
    engine, tables = tag_db
    points = samples(2000, seed=5)
    _insert(engine, tables, points)
    first = datetime(2024, 3, 12, 1, tzinfo=UTC)
    _run(engine, tables, first)
    hourly, daily = _table(engine, tables, "hour"), _table(engine, tables, "day")

    # Late rows for one tag in one old hour (a forwarder's backlog), ingested later:
    # one good value below every other, one bad point, one good value at the hour's end.
    hour = datetime(2024, 3, 10, 7, tzinfo=UTC)
    late_at = INGESTED + timedelta(hours=1)
    late = [
        {"tag_id": 2, "ts": hour + timedelta(minutes=1, microseconds=7000), "value": -1000.0,
         "text_value": None, "quality": GOOD, "reason": None, "ingested_at": late_at},
        {"tag_id": 2, "ts": hour + timedelta(minutes=2, microseconds=7000), "value": 5.0,
         "text_value": None, "quality": BAD, "reason": "test", "ingested_at": late_at},
        {"tag_id": 2, "ts": hour + timedelta(minutes=59, seconds=59, microseconds=999000),
         "value": 3.5, "text_value": None, "quality": GOOD, "reason": None,
         "ingested_at": late_at},
    ]
    _insert(engine, tables, late)
    second = datetime(2024, 3, 12, 2, tzinfo=UTC)
    stats = _run(engine, tables, second)
    assert stats.mode == LATE and (stats.hours_written, stats.days_written) == (1, 1)
    _assert_matches(engine, tables, points + late)
    after_h, after_d = _table(engine, tables, "hour"), _table(engine, tables, "day")
    changed_h = {k for k, r in after_h.items() if r["updated_at"] == second}
    changed_d = {k for k, r in after_d.items() if r["updated_at"] == second}
    assert changed_h == {(2, hour)} and changed_d == {(2, datetime(2024, 3, 10, tzinfo=UTC))}
    assert after_h[(2, hour)]["value_min"] == after_d[(2, datetime(2024, 3, 10, tzinfo=UTC))][
        "value_min"] == -1000.0
    assert after_h[(2, hour)]["last_value"] == 3.5
    for key in set(after_h) - changed_h:  # every other hour and day untouched
        assert after_h[key] == hourly[key]
    for key in set(after_d) - changed_d:
        assert after_d[key] == daily[key]

    # A rerun finds the rows of the 5-minute overlap again and changes nothing.
    again = _run(engine, tables, datetime(2024, 3, 12, 3, tzinfo=UTC))
    assert again.mode == LATE and (again.hours_written, again.days_written) == (0, 0)
    assert _table(engine, tables, "hour") == after_h and _table(engine, tables, "day") == after_d


def test_incremental_rollups_equal_a_rollup_from_scratch(tag_db):
    engine, tables = tag_db
    points = samples(2500, seed=23)
    # Three batches, each ingested an hour after the previous, overlapping in time.
    batches = [points[:1000], points[1000:1800], points[1800:]]
    for i, batch in enumerate(batches):
        at = INGESTED + timedelta(hours=i)
        _insert(engine, tables, [dict(p, ingested_at=at) for p in batch])
        _run(engine, tables, datetime(2024, 3, 12, 1 + i, tzinfo=UTC))
    incremental = {u: _values(_table(engine, tables, u)) for u in ("hour", "day")}
    with engine.begin() as conn:  # no watermark: the next run rolls up every hour again
        conn.execute(delete(tables.pipeline_watermark))
    stats = _run(engine, tables, datetime(2024, 3, 12, 9, tzinfo=UTC))
    assert stats.mode == ALL and stats.hours_written == 0 and stats.days_written == 0
    assert incremental == {u: _values(_table(engine, tables, u)) for u in ("hour", "day")}
    _assert_matches(engine, tables, points)


def test_nothing_to_roll_up(tag_db):
    engine, tables = tag_db
    assert _run(engine, tables, datetime(2024, 3, 12, tzinfo=UTC)).mode == NOTHING
    assert _table(engine, tables, "hour") == {}


def test_the_hourly_flow_rolls_up_tags_and_runs_as_before_without_them(db):
    from flows.hourly_aggregation import hourly_aggregation
    from tests.integration.aggregation.conftest import readings

    raw = readings(["L001"], START, START + timedelta(hours=3))
    db.insert_raw(raw)
    points = samples(500, seed=3)
    _insert(db.engine, db.tables, points)
    try:
        kwargs = {"start": START, "end": START + timedelta(hours=3), "source_db": db.block,
                  "target_db": db.block}
        summary = hourly_aggregation(**kwargs)
        hours, days = expected(points, "hour"), expected(points, "day")
        assert summary["groups"] == 3 and summary["raw_rows"] == len(raw)
        assert {k: summary[k] for k in ("tag_rollup", "tag_samples", "tag_hours_written",
                                        "tag_days_written")} == {
            "tag_rollup": ALL, "tag_samples": len(points), "tag_hours_written": len(hours),
            "tag_days_written": len(days)}
        _assert_matches(db.engine, db.tables, points)
        again = hourly_aggregation(**kwargs)
        assert again["tag_rollup"] == LATE and again["tag_hours_written"] == 0
        if db.dialect == "sqlite":  # a source without tag_samples: skipped, the rest as before
            with db.engine.begin() as conn:
                db.tables.tag_samples.drop(conn)
            third = hourly_aggregation(**kwargs)
            assert third["tag_rollup"] == "skipped" and third["groups"] == 3
    finally:
        if db.dialect != "sqlite":  # the session's PostgreSQL database; SQLite's is the test's
            _clean(db.engine, db.tables)


def test_a_database_made_before_the_rollup_tables_gets_them(tmp_path):
    from shopfloor.aggregation.tag_rollup import roll_up_database
    from shopfloor.db.schema import get_tables

    engine, tables = make_engine(f"sqlite+pysqlite:///{tmp_path / 'old.db'}"), get_tables()
    with engine.begin() as conn:  # only what capture made: no tag_hourly, tag_daily, watermark
        tables.tag_samples.create(conn)
    points = samples(300, seed=9)
    _insert(engine, tables, points)
    stats = roll_up_database(engine, tables, datetime(2024, 3, 12, 1, tzinfo=UTC))
    assert stats.mode == ALL and stats.samples == len(points)
    _assert_matches(engine, tables, points)
    engine.dispose()
