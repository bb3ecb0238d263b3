"""``copy_select``: rows piped from one PostgreSQL connection's ``COPY TO`` into another's
``COPY FROM`` (the staged aggregation path between two PostgreSQL databases)."""

import uuid

import pytest
from psycopg2.errors import DivisionByZero, InvalidTextRepresentation
from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    column,
    func,
    literal,
    select,
    text,
    values,
)

from shopfloor.db.bulk import can_pipe, copy_select

COLUMNS = ("name", "value", "n")


@pytest.fixture
def target_table(pg_engine):
    table = Table(f"copy_target_{uuid.uuid4().hex[:8]}", MetaData(),
                  Column("name", String(64)), Column("value", Float), Column("n", Integer))
    table.create(pg_engine)
    yield table
    table.drop(pg_engine)


def _rows():
    return [("plain", 0.1 + 0.2, 1), ('quo"te, comma', 1e-300, 2), ("", None, 3),
            (None, 31.999999999999996, None), ("it's", -0.0, 4)]


def _source_query(rows):
    data = values(column("name", String), column("value", Float), column("n", Integer),
                  name="v").data(rows)
    return select(data.c.name, data.c.value, data.c.n)


def test_rows_arrive_exactly_nulls_and_empty_strings_kept(pg_engine, target_table):
    with pg_engine.connect() as source, pg_engine.begin() as target:
        assert can_pipe(source, target)
        copy_select(source, _source_query(_rows()), target, target_table, COLUMNS)
    with pg_engine.connect() as conn:
        got = conn.execute(select(target_table).order_by(target_table.c.n.nulls_last())).all()
    assert [tuple(r) for r in got] == _rows()[:3] + [_rows()[4], _rows()[3]]


def test_bound_values_and_in_lists_are_quoted_by_the_driver(pg_engine, target_table):
    hostile = "x'); DROP TABLE pg_class; --"
    query = select(literal(hostile).label("name"), literal(1.5).label("value"),
                   func.count().label("n")).select_from(
        select(text("g")).select_from(func.generate_series(1, 5).alias("g")).where(
            column("g").in_([1, 2, 3])).subquery())
    with pg_engine.connect() as source, pg_engine.begin() as target:
        copy_select(source, query, target, target_table, COLUMNS)
    with pg_engine.connect() as conn:
        assert conn.execute(select(target_table)).all() == [(hostile, 1.5, 3)]


def test_a_failing_source_raises_and_the_target_keeps_nothing(pg_engine, target_table):
    bad = select(literal("a").label("name"), (literal(1.0) / literal(0.0)).label("value"),
                 literal(1).label("n"))
    with pytest.raises(DivisionByZero):
        with pg_engine.connect() as source, pg_engine.begin() as target:
            copy_select(source, bad, target, target_table, COLUMNS)
    with pg_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(target_table)).scalar() == 0


def test_a_failing_target_raises_and_does_not_hang_the_source(pg_engine, target_table):
    # 200,000 rows: more than a pipe buffer, so the source is still writing when the
    # target refuses the first row (text into an integer column).
    many = select(literal("a").label("name"), literal(1.0).label("value"),
                  literal("not a number").label("n")).select_from(
        func.generate_series(1, 200_000).alias("g"))
    with pytest.raises(InvalidTextRepresentation):
        with pg_engine.connect() as source, pg_engine.begin() as target:
            copy_select(source, many, target, target_table, COLUMNS)
    with pg_engine.connect() as conn:  # the source connection pool still works
        assert conn.execute(select(func.count()).select_from(target_table)).scalar() == 0


def test_ready_is_called_once_the_source_has_rows_and_before_the_target_reads(
        pg_engine, target_table):
    seen = []
    with pg_engine.connect() as source, pg_engine.begin() as target:
        def ready() -> None:  # asked in the target's own transaction: nothing read yet
            seen.append(target.execute(select(func.count()).select_from(target_table)).scalar())

        copy_select(source, _source_query(_rows()), target, target_table, COLUMNS, ready)
        seen.append(target.execute(select(func.count()).select_from(target_table)).scalar())
    assert seen == [0, 5]
    with pg_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(target_table)).scalar() == 5


def test_ready_is_not_called_when_the_source_fails_first(pg_engine, target_table):
    called = []
    bad = select(literal("a").label("name"), (literal(1.0) / literal(0.0)).label("value"),
                 literal(1).label("n"))
    with pytest.raises(DivisionByZero):
        with pg_engine.connect() as source, pg_engine.begin() as target:
            copy_select(source, bad, target, target_table, COLUMNS, lambda: called.append(1))
    assert called == []
