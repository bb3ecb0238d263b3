"""db init and the batch upsert on real SQLite, PostgreSQL and MariaDB."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, inspect, select

from shopfloor.db.engine import check_connection, init_db, make_engine
from shopfloor.db.upsert import upsert
from shopfloor.db.watermark import get_watermark, set_watermark
from shopfloor.errors import ShopfloorError

CORE = {"temperature_raw", "temperature_hourly", "location", "quarantine", "s3_object",
        "pipeline_watermark", "sqlth_te"}


@pytest.fixture(params=["sqlite", "postgresql", "postgresql-schema", "mariadb"])
def db(request, tmp_path):
    if request.param == "sqlite":
        url, schema = f"sqlite+pysqlite:///{tmp_path / 'x.db'}", None
    elif request.param == "mariadb":
        url, schema = request.getfixturevalue("mariadb_url"), None
    else:
        url = request.getfixturevalue("pg_url")
        schema = "flet_montrg" if request.param == "postgresql-schema" else None
    engine = make_engine(url)
    yield engine, schema
    tables = init_db(engine, schema)
    with engine.begin() as conn:  # leave the shared PostgreSQL database clean
        for t in (tables.temperature_hourly, tables.pipeline_watermark):
            conn.execute(t.delete())
    engine.dispose()


def hourly_rows(n: int, value: float) -> list[dict]:
    now = datetime(2026, 11, 21, tzinfo=UTC)
    return [
        {"loc_id": f"L{i % 50:03d}", "ymd": f"202611{1 + i // 1200:02d}",
         "hh": f"{(i // 50) % 24:02d}", "temperature_max": value + i,
         "temperature_avg": value, "sample_count": i + 1, "updated_at": now}
        for i in range(n)
    ]


def test_db_init_creates_every_table_and_is_idempotent(db):
    engine, schema = db
    init_db(engine, schema)
    init_db(engine, schema)
    assert CORE <= set(inspect(engine).get_table_names(schema=schema))


def test_upsert_inserts_updates_and_a_repeat_changes_nothing(db):
    engine, schema = db
    t = init_db(engine, schema).temperature_hourly
    rows = hourly_rows(3000, 20.0)
    with engine.begin() as conn:
        assert upsert(conn, t, rows, ["loc_id", "ymd", "hh"], batch_size=1000) == 3000
    changed = [dict(r, temperature_avg=25.0) for r in rows[:1000]]
    with engine.begin() as conn:
        upsert(conn, t, changed, ["loc_id", "ymd", "hh"])
    with engine.connect() as conn:
        before = conn.execute(select(t).order_by(t.c.loc_id, t.c.ymd, t.c.hh)).all()
    with engine.begin() as conn:
        upsert(conn, t, changed, ["loc_id", "ymd", "hh"])
    with engine.connect() as conn:
        after = conn.execute(select(t).order_by(t.c.loc_id, t.c.ymd, t.c.hh)).all()
        assert conn.execute(select(func.count()).select_from(t)).scalar() == 3000
        avg = conn.execute(select(func.sum(t.c.temperature_avg))).scalar()
    assert before == after
    assert avg == pytest.approx(1000 * 25.0 + 2000 * 20.0)


def test_upsert_sends_thousands_of_rows_per_round_trip(db):
    engine, schema = db
    t = init_db(engine, schema).temperature_hourly
    statements = []
    listener = lambda *args: statements.append(1)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        with engine.begin() as conn:
            upsert(conn, t, hourly_rows(5000, 1.0), ["loc_id", "ymd", "hh"], batch_size=5000)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    # One executemany per batch; PostgreSQL packs it into multi-row VALUES pages.
    assert len(statements) <= 5


def test_upsert_with_nothing_to_update_ignores_existing_keys(db):
    engine, schema = db
    t = init_db(engine, schema).pipeline_watermark
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        upsert(conn, t, [{"name": "w", "value": "1", "updated_at": now}], ["name"], [])
        upsert(conn, t, [{"name": "w", "value": "2", "updated_at": now}], ["name"], [])
        assert get_watermark(conn, init_db(engine, schema), "w") == "1"


def test_watermark_round_trip(db):
    engine, schema = db
    tables = init_db(engine, schema)
    with engine.begin() as conn:
        assert get_watermark(conn, tables, "hourly") is None
        set_watermark(conn, tables, "hourly", "2026-11-21T00:00:00+00:00")
        set_watermark(conn, tables, "hourly", "2026-11-21T01:00:00+00:00")
        assert get_watermark(conn, tables, "hourly") == "2026-11-21T01:00:00+00:00"


def test_timestamps_come_back_as_the_same_utc_instant(db):
    engine, schema = db
    t = init_db(engine, schema).temperature_raw
    ts = datetime(2026, 3, 29, 1, 30, 15, 123000, tzinfo=UTC)
    row = {"loc_id": "TZ", "capture_dt": ts.astimezone(), "temperature": 1.0,
           "ingested_at": ts + timedelta(seconds=1)}
    with engine.begin() as conn:
        upsert(conn, t, [row], ["loc_id", "capture_dt"])
        got = conn.execute(select(t.c.capture_dt).where(t.c.loc_id == "TZ")).scalar_one()
        conn.execute(t.delete().where(t.c.loc_id == "TZ"))
    assert got == ts and got.tzinfo is not None


def test_unreachable_database_is_one_clear_error():
    engine = make_engine("postgresql+psycopg2://nobody@127.0.0.1:1/none")
    with pytest.raises(ShopfloorError, match="cannot connect to database 'warehouse'"):
        check_connection(engine, "warehouse")
