"""The CSV that COPY reads, and which path a pair of databases takes."""

import csv
import io
from types import SimpleNamespace

from sqlalchemy import Column, Float, MetaData, String, Table, create_engine

from shopfloor.aggregation.in_database import IN_DATABASE, PORTABLE, STAGED, choose_path
from shopfloor.db.bulk import copy_csv, copy_statement


def test_none_is_an_unquoted_empty_field_and_an_empty_string_stays_quoted():
    text = copy_csv([("L1", None, "", 2)]).read()
    assert text == '"L1",,"",2\n'


def test_floats_round_trip_exactly_and_quotes_in_strings_are_doubled():
    values = [0.1 + 0.2, 1e-300, 31.999999999999996, float("inf")]
    text = copy_csv([('a "b",c', *values)]).read()
    (row,) = csv.reader(io.StringIO(text))
    assert row[0] == 'a "b",c'
    assert [float(v) for v in row[1:]] == values


def test_the_copy_statement_quotes_the_table_and_column_names():
    table = Table("Tmp Hourly", MetaData(), Column("loc_id", String), Column("avg", Float))
    conn = SimpleNamespace(dialect=create_engine("postgresql+psycopg2://u@127.0.0.1/db").dialect)
    assert copy_statement(conn, table, ["loc_id", "avg"]) == (
        'COPY "Tmp Hourly" (loc_id, avg) FROM STDIN (FORMAT csv)')


def test_one_database_is_in_database_another_postgresql_or_sqlite_is_staged(tmp_path):
    pg = create_engine("postgresql+psycopg2://u@127.0.0.1:5432/iot")
    hq = create_engine("postgresql+psycopg2://u@127.0.0.1:5432/hq")
    lite = create_engine(f"sqlite+pysqlite:///{tmp_path / 'a.db'}")
    maria = create_engine("mysql+pymysql://u@127.0.0.1:3306/hq")
    assert choose_path(pg, create_engine("postgresql+psycopg2://u@127.0.0.1:5432/iot")) == (
        IN_DATABASE)
    assert choose_path(lite, lite) == IN_DATABASE
    assert choose_path(pg, hq) == STAGED
    assert choose_path(maria, lite) == STAGED
    assert choose_path(lite, pg) == STAGED
    assert choose_path(pg, maria) == PORTABLE
    assert choose_path(maria, maria) == PORTABLE
