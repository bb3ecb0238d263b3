"""The COPY-staged upsert a forwarder drains a backlog with, on real PostgreSQL."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from shopfloor.db.copy_upsert import COPY_MIN_ROWS, can_copy_upsert, copy_upsert
from shopfloor.db.engine import init_db
from shopfloor.db.schema import get_tables

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _rows(n: int, temperature: float, loc: str) -> list[dict]:
    return [{"loc_id": loc, "capture_dt": T0 + timedelta(seconds=i), "device": "d",
             "temperature": temperature + i, "humidity": None, "pcv_temperature": 1.5,
             "ingested_at": T0} for i in range(n)]


def test_a_repeat_overwrites_and_times_stay_utc(pg_engine):
    tables = init_db(pg_engine)
    t = tables.temperature_raw
    rows = _rows(COPY_MIN_ROWS, 20.0, "COPY-1")
    with pg_engine.begin() as conn:
        assert can_copy_upsert(conn, len(rows))
        copy_upsert(conn, t, rows + rows[:3], ["loc_id", "capture_dt"])  # a key twice
    with pg_engine.begin() as conn:
        copy_upsert(conn, t, _rows(COPY_MIN_ROWS, 30.0, "COPY-1"), ["loc_id", "capture_dt"])
    with pg_engine.connect() as conn:
        n = conn.scalar(select(func.count()).where(t.c.loc_id == "COPY-1"))
        first = conn.execute(select(t).where(t.c.loc_id == "COPY-1")
                             .order_by(t.c.capture_dt).limit(1)).mappings().one()
    assert n == COPY_MIN_ROWS  # no row twice
    assert first["capture_dt"] == T0 and first["temperature"] == 30.0  # overwritten
    assert first["humidity"] is None and first["ingested_at"] == T0
    assert get_tables().temperature_raw.name == t.name


def test_few_rows_keep_the_plain_upsert(pg_engine):
    with pg_engine.connect() as conn:
        assert not can_copy_upsert(conn, 3)
