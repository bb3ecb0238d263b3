"""Tag LIKE patterns against a real SQLite database, and partition keys."""

import re

import pytest
from sqlalchemy import insert
from sqlalchemy.dialects import postgresql

from shopfloor.db.engine import make_engine
from shopfloor.db.schema import get_tables
from shopfloor.historian.tags import load_tags, partition_key, tag_filter

PATHS = ["line1/temp", "line1/humidity", "line10/temp", "line1_x/temp", "Line 2/flow=3",
         "line2/temp"]


@pytest.fixture
def tag_db(sqlite_url):
    engine = make_engine(sqlite_url)
    tables = get_tables(None)
    tables.sqlth_te.create(engine)
    with engine.begin() as conn:
        conn.execute(insert(tables.sqlth_te),
                     [{"id": i, "tagpath": p} for i, p in enumerate(PATHS, 1)])
    yield engine, tables
    engine.dispose()


@pytest.mark.parametrize(("patterns", "expected"), [
    (["%"], PATHS),
    (["line1/%"], ["line1/temp", "line1/humidity"]),
    (["line1%/temp"], ["line1/temp", "line10/temp", "line1_x/temp"]),
    (["line1\\_%"], ["line1_x/temp"]),  # an escaped underscore is a literal underscore
    (["line1_/temp"], ["line10/temp"]),  # an unescaped one matches any single character
    (["%/temp", "line2/%"], ["line1/temp", "line10/temp", "line1_x/temp", "line2/temp"]),
    (["nothing%"], []),
])
def test_like_patterns_select_tags(tag_db, patterns, expected):
    engine, tables = tag_db
    with engine.connect() as conn:
        tags = load_tags(conn, tables, patterns)
    assert sorted(t.tagpath for t in tags) == sorted(expected)


def test_patterns_are_bound_parameters_not_sql_text():
    clause = tag_filter(get_tables(None), ["x' OR '1'='1"])
    sql = str(clause.compile(dialect=postgresql.dialect()))
    assert "OR '1'" not in sql and "%(tagpath_1)s" in sql and "ESCAPE" in sql


def test_partition_keys_are_folder_safe_and_distinct():
    keys = [partition_key(p) for p in PATHS + ["line1_temp", "a/b", "a_b", "../etc"]]
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", k) for k in keys)
    assert len(set(keys)) == len(keys)
    assert partition_key("line1_temp") == "line1_temp"  # already safe: unchanged
    assert partition_key("line1/temp").startswith("line1_temp_")
    assert partition_key("line1/temp") == partition_key("line1/temp")
