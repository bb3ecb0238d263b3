"""Reprocess finds the quarantine rows of its hours in SQL (the reading's time inside the
JSON record), on real SQLite, PostgreSQL and MariaDB (when reachable)."""

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, insert, select

from shopfloor.db.engine import init_db, make_engine
from shopfloor.modbus.reprocess import quarantine_of_hours

H = datetime(2026, 11, 20, 8, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def db(request, tmp_path):
    url = {"sqlite": lambda: f"sqlite+pysqlite:///{tmp_path / 'q.db'}",
           "postgresql": lambda: request.getfixturevalue("pg_url"),
           "mariadb": lambda: request.getfixturevalue("mariadb_url")}[request.param]()
    engine = make_engine(url)
    tables = init_db(engine)
    yield engine, tables
    engine.dispose()


def _row(source: str, record: str) -> dict:
    return {"source": source, "record": record, "reasons": "[]", "run_id": "r",
            "quarantined_at": H}


def _reading(at: datetime | None, name: str) -> str:
    body = {"name": name, "temperature": 99.0}
    if at is not None:
        body["capture_dt"] = at.isoformat()
    return json.dumps(body, sort_keys=True)


def test_the_rows_of_the_hours_are_chosen_by_the_database(db):
    engine, tables = db
    source, other = f"modbus:q-{uuid.uuid4().hex[:8]}", f"modbus:o-{uuid.uuid4().hex[:8]}"
    rows = [
        _row(source, _reading(H + timedelta(minutes=5, microseconds=500_000), "in-first")),
        _row(source, _reading(H, "first-instant")),
        _row(source, _reading(H + timedelta(hours=2, minutes=59, seconds=59), "in-third")),
        _row(source, _reading(H + timedelta(hours=1), "end-excluded")),
        _row(source, _reading(H - timedelta(seconds=1), "before")),
        _row(source, _reading(None, "no-time")),
        _row(other, _reading(H + timedelta(minutes=1), "other-source")),
        _row(other, "not json at all"),  # another writer's record is never parsed
    ]
    expected = {"in-first", "first-instant", "in-third"}
    if engine.dialect.name == "postgresql":  # instants: any offset is read right
        local = (H + timedelta(minutes=30)).astimezone(timezone(timedelta(hours=8)))
        rows.append(_row(source, _reading(local, "in-first-at-plus-8")))
        expected.add("in-first-at-plus-8")
    q = tables.quarantine
    with engine.begin() as conn:
        conn.execute(insert(q), rows)
    try:
        where = quarantine_of_hours(tables, source, [H, H + timedelta(hours=2)],
                                    engine.dialect.name)
        with engine.connect() as conn:
            chosen = {json.loads(r.record)["name"] for r in conn.execute(select(q).where(where))}
        assert chosen == expected
        with engine.begin() as conn:
            assert conn.execute(delete(q).where(where)).rowcount == len(expected)
            left = conn.execute(select(q.c.record).where(q.c.source.in_([source, other]))).all()
        assert len(left) == len(rows) - len(expected)
    finally:
        with engine.begin() as conn:
            conn.execute(delete(q).where(q.c.source.in_([source, other])))


def test_the_hours_are_bound_parameters():
    from sqlalchemy.dialects import postgresql, sqlite

    from shopfloor.db.schema import get_tables

    where = quarantine_of_hours(get_tables(), "modbus:x", [H], "sqlite")
    sql = str(where.compile(dialect=sqlite.dialect()))
    assert "2026" not in sql and "modbus:x" not in sql
    sql = str(quarantine_of_hours(get_tables(), "modbus:x", [H], "postgresql")
              .compile(dialect=postgresql.dialect()))
    assert "2026" not in sql and "JSONB" in sql
