"""A fresh warehouse per test on SQLite and on PostgreSQL (its own schema there)."""

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, insert, text

from shopfloor.db.engine import init_db, make_engine
from shopfloor.db.schema import Tables


@dataclass
class Warehouse:
    engine: Engine
    tables: Tables

    def insert(self, table, rows: list[dict]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(table), rows)

    def create_optional_tables(self) -> None:
        """The ``anomaly`` and ``quality_score`` tables other parts of the suite write."""
        with self.engine.begin() as conn:
            for table in (self.tables.anomaly, self.tables.quality_score):
                table.create(conn, checkfirst=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def wh(request, tmp_path) -> Iterator[Warehouse]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite+pysqlite:///{tmp_path / 'wh.db'}")
        yield Warehouse(engine, init_db(engine))
        engine.dispose()
        return
    engine = request.getfixturevalue("pg_engine")
    schema = f"dash_{uuid.uuid4().hex[:8]}"
    yield Warehouse(engine, init_db(engine, schema))
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
