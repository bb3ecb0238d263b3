"""The daily rollup equals an independent SQL over raw grouped by local day (PostgreSQL
AT TIME ZONE, across DST), kept current by the hourly flow and the backfill; and every
aggregated window leaves its quality row."""

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select, text

from flows.backfill import hourly_backfill
from flows.hourly_aggregation import hourly_aggregation
from tests.integration.aggregation.conftest import make_db, readings

LOCS = ["L001", "L002", "L003"]
ZONE = "America/New_York"
MEASURES = ("temperature", "humidity", "pcv_temperature")


@pytest.fixture
def pg_db(pg_url, prefect_harness):
    from tests.integration.aggregation.conftest import _clean

    db = make_db(pg_url)
    yield db
    _clean(db.engine, db.tables)
    db.engine.dispose()


def _independent_daily(db) -> dict[tuple, dict]:
    """Raw readings grouped by their local day in SQL, not through any hourly row."""
    parts = ", ".join(
        f"count({m}) AS {m}_count, sum({m}) AS {m}_sum, min({m}) AS {m}_min, "
        f"max({m}) AS {m}_max, avg({m}) AS {m}_avg" for m in MEASURES)
    sql = (f"SELECT loc_id, to_char((capture_dt AT TIME ZONE 'UTC') AT TIME ZONE :zone, "
           f"'YYYYMMDD') AS ymd, {parts}, count(*) AS sample_count "
           "FROM temperature_raw GROUP BY 1, 2")
    with db.engine.connect() as conn:
        return {(r["loc_id"], r["ymd"]): dict(r)
                for r in conn.execute(text(sql), {"zone": ZONE}).mappings()}


def _daily(db) -> dict[tuple, dict]:
    d = db.tables.temperature_daily
    with db.engine.connect() as conn:
        return {(r["loc_id"], r["ymd"]): dict(r) for r in conn.execute(select(d)).mappings()}


def _assert_daily_exact(db) -> None:
    want, got = _independent_daily(db), _daily(db)
    assert got.keys() == want.keys()
    for key, w in want.items():
        g = got[key]
        assert g["sample_count"] == w["sample_count"], key
        for m in MEASURES:
            assert g[f"{m}_count"] == w[f"{m}_count"], (key, m)
            for part in ("sum", "min", "max", "avg"):
                if w[f"{m}_{part}"] is None:
                    assert g[f"{m}_{part}"] is None, (key, m, part)
                else:
                    assert g[f"{m}_{part}"] == pytest.approx(float(w[f"{m}_{part}"]),
                                                             rel=1e-12), (key, m, part)


def _quality(db) -> list[dict]:
    q = db.tables.quality_score
    with db.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(q).order_by(q.c.id)).mappings()]


def test_hourly_flow_keeps_the_daily_rollup_exact_and_scores_its_window(pg_db):
    db = pg_db
    # Around the New York fall-back: 2024-11-03 has 25 hours; some humidity is NULL.
    rows = readings(LOCS, datetime(2024, 11, 2, 4, tzinfo=UTC),
                    datetime(2024, 11, 4, 5, tzinfo=UTC))
    # A location without humidity all day: its daily humidity is NULL, count 0.
    for r in rows:
        if r["loc_id"] == "L003":
            r["humidity"] = None
    db.insert_raw(rows)
    summary = hourly_aggregation(start=datetime(2024, 11, 2), end=datetime(2024, 11, 4),
                                 source_db=db.block, target_db=db.block, timezone=ZONE)
    _assert_daily_exact(db)
    daily = _daily(db)
    assert daily[("L001", "20241103")]["hours"] == 24  # 25 real hours, 01 twice in one row
    assert daily[("L003", "20241103")]["humidity_count"] == 0
    assert daily[("L003", "20241103")]["humidity_avg"] is None

    (q,) = _quality(db)
    hourly = db.hourly()
    assert summary["windows"] == 1
    assert q["flow"] == "hourly-aggregation" and q["subject"] == "20241102 00:00 - 20241104 00:00"
    assert q["rows_in"] == q["rows_valid"] == len(rows) == summary["raw_rows"]
    assert q["expected"] == 3 * 48 and len(hourly) == 3 * 48
    assert (q["completeness"], q["validity"], q["uniqueness"], q["timeliness"],
            q["overall"]) == (1.0, 1.0, 1.0, 1.0, 1.0)
    assert q["window_start"] == datetime(2024, 11, 2, 4, tzinfo=UTC)
    assert q["window_end"] == datetime(2024, 11, 4, 5, tzinfo=UTC)
    assert summary["quality_rows"] == 1 and summary["q_overall"] == 1.0


def test_a_gap_lowers_completeness_and_the_backfill_keeps_days_current(pg_db):
    db = pg_db
    rows = readings(LOCS, datetime(2024, 11, 2, 4, tzinfo=UTC),
                    datetime(2024, 11, 4, 5, tzinfo=UTC))
    # L002 is silent for three hours of 2024-11-03 (local 10:00 to 13:00)
    gap = (datetime(2024, 11, 3, 15, tzinfo=UTC), datetime(2024, 11, 3, 18, tzinfo=UTC))
    rows = [r for r in rows if not (r["loc_id"] == "L002" and gap[0] <= r["capture_dt"] < gap[1])]
    db.insert_raw(rows)
    hourly_backfill(date(2024, 11, 2), date(2024, 11, 3), chunk_hours=24, max_concurrency=1,
                    source_db=db.block, target_db=db.block, timezone=ZONE)
    _assert_daily_exact(db)
    q = {r["subject"]: r for r in _quality(db)}
    day = q["20241103 00:00 - 20241104 00:00"]
    assert day["expected"] == 3 * 24 and day["rows_in"] == sum(
        1 for r in rows if datetime(2024, 11, 3, 4, tzinfo=UTC) <= r["capture_dt"]
        < datetime(2024, 11, 4, 5, tzinfo=UTC))
    assert day["completeness"] == pytest.approx((3 * 24 - 3) / (3 * 24))
    assert q["20241102 00:00 - 20241103 00:00"]["completeness"] == 1.0

    # A late reading: the backfill of its day brings the daily row up to date.
    late = dict(rows[0], loc_id="L001", capture_dt=datetime(2024, 11, 3, 16, 1, 30, tzinfo=UTC),
                temperature=99.25, ingested_at=datetime.now(UTC) - timedelta(hours=1))
    db.insert_raw([late])
    before = _daily(db)[("L001", "20241103")]
    hourly_backfill(date(2024, 11, 3), date(2024, 11, 3), chunk_hours=24, max_concurrency=1,
                    source_db=db.block, target_db=db.block, timezone=ZONE)
    _assert_daily_exact(db)
    after = _daily(db)[("L001", "20241103")]
    assert after["temperature_count"] == before["temperature_count"] + 1
    assert after["temperature_max"] == 99.25


def _hourly_row(loc: str, hh: int, n: int) -> dict:
    row = {"loc_id": loc, "ymd": "20240901", "hh": f"{hh:02d}", "sample_count": n}
    for m in MEASURES:
        row.update({f"{m}_count": n, f"{m}_sum": 20.0 * n, f"{m}_min": 20.0,
                    f"{m}_max": 20.0, f"{m}_avg": 20.0})
    return row


def test_two_writers_of_one_day_do_not_lose_each_others_hours(pg_db):
    """Two READ COMMITTED transactions write different hours of one day and refresh it:
    without the day lock the later commit would keep a day missing the other's hours."""
    import threading

    from sqlalchemy import insert

    from shopfloor.aggregation.daily import refresh_days

    tables, now = pg_db.tables, datetime.now(UTC)
    first = pg_db.engine.connect()
    tx = first.begin()
    first.execute(insert(tables.temperature_hourly),
                  [dict(_hourly_row("L001", h, 10), updated_at=now) for h in range(12)])
    refresh_days(first, tables, ["20240901"], ["L001"], now)  # holds the day until commit

    def second_writer() -> None:
        with pg_db.engine.begin() as conn:
            conn.execute(insert(tables.temperature_hourly),
                         [dict(_hourly_row("L001", h, 1), updated_at=now)
                          for h in range(12, 24)])
            refresh_days(conn, tables, ["20240901"], ["L001"], now)

    other = threading.Thread(target=second_writer)
    other.start()
    other.join(timeout=1.0)
    assert other.is_alive()  # waiting for the first writer's day
    tx.commit()
    first.close()
    other.join(timeout=30)
    assert not other.is_alive()
    with pg_db.engine.connect() as conn:
        day = conn.execute(select(tables.temperature_daily.c.hours,
                                  tables.temperature_daily.c.sample_count)
                           .where(tables.temperature_daily.c.ymd == "20240901")).one()
    assert tuple(day) == (24, 12 * 10 + 12 * 1)
