"""The synthetic historian on a real SQLite file: tables per month, counts, idempotency."""

from datetime import UTC, datetime

from sqlalchemy import func, select

from shopfloor.db.engine import make_engine
from shopfloor.db.schema import get_tables, historian_data_table
from shopfloor.historian.seed import BAD, GOOD, HistorianSeed, reading, seed_historian

SEED = HistorianSeed(start=datetime(2026, 1, 31, 22, tzinfo=UTC),
                     end=datetime(2026, 2, 1, 2, tzinfo=UTC), n_tags=5, interval_s=1800,
                     bad_every=4)


def test_seed_fills_one_table_per_month_and_is_safe_to_repeat(sqlite_url):
    engine = make_engine(sqlite_url)
    tables = get_tables(None)
    first = seed_historian(engine, tables, SEED)
    again = seed_historian(engine, tables, SEED)
    # 4 readings per tag before midnight, 4 after
    assert first == again == {"sqlt_data_1_2026_01": 20, "sqlt_data_1_2026_02": 20}
    feb = historian_data_table(tables, "sqlt_data_1_2026_02")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(feb)).scalar() == 20
        bad = conn.execute(select(func.count()).where(feb.c.dataintegrity == BAD)).scalar()
        tags = conn.execute(select(tables.sqlth_te.c.tagpath).order_by("id")).scalars().all()
    assert bad == 5  # (k + id) % 4 == 0 hits one of every 4 readings
    assert tags == ["line2/sensor_0001", "line3/sensor_0002", "line4/sensor_0003",
                    "line1/sensor_0004", "line2/sensor_0005"]
    engine.dispose()


def test_reading_values_follow_the_tag_type():
    t0 = SEED.origin_ms
    assert reading(SEED, 1, t0)["floatvalue"] == 21.0 and reading(SEED, 1, t0)["intvalue"] is None
    assert reading(SEED, 2, t0 + 1_800_000)["intvalue"] == 3
    assert reading(SEED, 3, t0 + 1_800_000)["dataintegrity"] == BAD  # k=1, (1+3) % 4 == 0
    assert reading(SEED, 3, t0)["dataintegrity"] == GOOD
