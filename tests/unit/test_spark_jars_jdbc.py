"""JDBC driver jar discovery and SQLAlchemy URL -> JDBC mapping (no Spark started)."""

import sys

import pytest
from sqlalchemy import create_mock_engine

from shopfloor.db.schema import get_tables, historian_data_table
from shopfloor.errors import ShopfloorError
from shopfloor.spark.jars import JARS_ENV, MAVEN_PACKAGES, jar_conf
from shopfloor.spark.jdbc import jdbc_source, month_subquery
from shopfloor.spark.session import local_worker_python, session_conf


@pytest.fixture
def debian_jars(tmp_path):
    jars = [tmp_path / "postgresql.jar", tmp_path / "sqlite-jdbc.jar", tmp_path / "missing.jar"]
    for jar in jars[:2]:
        jar.write_bytes(b"PK")
    return [str(j) for j in jars]


def test_spark_conf_jars_win_over_everything(debian_jars):
    conf = {"spark.jars.packages": "org.postgresql:postgresql:42.7.4"}
    assert jar_conf("postgresql", conf, {JARS_ENV: "/x.jar"}, debian_jars) == {}


def test_environment_variable_comes_next(debian_jars):
    assert jar_conf("postgresql", {}, {JARS_ENV: " /a.jar, /b.jar "}, debian_jars) == {
        "spark.jars": "/a.jar,/b.jar"}


def test_debian_jars_that_exist_come_next(debian_jars):
    assert jar_conf("sqlite", {}, {}, debian_jars) == {
        "spark.jars": ",".join(debian_jars[:2])}


def test_maven_packages_are_the_fallback(tmp_path):
    assert jar_conf("postgresql", {}, {}, [str(tmp_path / "none.jar")]) == {
        "spark.jars.packages": MAVEN_PACKAGES["postgresql"]}
    # no Debian package ships the SQL Server driver
    assert jar_conf("mssql", {}, {}, [str(tmp_path)]) == {
        "spark.jars.packages": MAVEN_PACKAGES["mssql"]}


def test_session_conf_turns_aqe_and_skew_join_on_and_user_settings_win():
    conf = session_conf("postgresql", {"spark.sql.adaptive.enabled": "false",
                                       "spark.jars": "/mine.jar"}, env={})
    assert conf["spark.sql.adaptive.skewJoin.enabled"] == "true"
    assert conf["spark.sql.adaptive.enabled"] == "false"
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.jars"] == "/mine.jar"


def test_local_workers_run_this_interpreter_cluster_workers_their_own():
    assert local_worker_python("local[2]", {}) == sys.executable
    assert local_worker_python("local[2]", {"PYSPARK_PYTHON": "/opt/py"}) is None
    assert local_worker_python("spark://h:7077", {}) is None


@pytest.mark.parametrize(("url", "jdbc", "driver"), [
    ("postgresql+psycopg2://u:s3cret@db.example:5433/hist?sslmode=require",
     "jdbc:postgresql://db.example:5433/hist?sslmode=require", "org.postgresql.Driver"),
    ("postgresql://u@db/hist", "jdbc:postgresql://db:5432/hist", "org.postgresql.Driver"),
    ("mysql+pymysql://u:s3cret@db/hist", "jdbc:mysql://db:3306/hist?permitMysqlScheme",
     "org.mariadb.jdbc.Driver"),
    ("mariadb+pymysql://u:s3cret@db:3307/hist", "jdbc:mysql://db:3307/hist?permitMysqlScheme",
     "org.mariadb.jdbc.Driver"),
    ("mssql+pymssql://u:s3cret@db/hist",
     "jdbc:sqlserver://db:1433;databaseName=hist;encrypt=false",
     "com.microsoft.sqlserver.jdbc.SQLServerDriver"),
    ("sqlite+pysqlite:///data/shopfloor.db", "jdbc:sqlite:data/shopfloor.db", "org.sqlite.JDBC"),
])
def test_sqlalchemy_urls_map_to_jdbc_with_credentials_apart(url, jdbc, driver):
    source = jdbc_source(url)
    assert (source.url, source.driver) == (jdbc, driver)
    assert "s3cret" not in source.url and "s3cret" not in repr(source)
    if "s3cret" in url:
        assert source.options()["password"] == "s3cret"
        assert source.options()["user"] == "u"


def test_unsupported_databases_are_a_clear_error():
    with pytest.raises(ShopfloorError, match="no JDBC mapping"):
        jdbc_source("oracle://u:p@db/x")
    with pytest.raises(ShopfloorError, match="in-memory"):
        jdbc_source("sqlite://")


@pytest.mark.parametrize("dialect", ["postgresql://", "mysql+pymysql://", "mssql+pymssql://"])
def test_month_subquery_selects_only_needed_columns_of_a_schema_table(dialect):
    table = historian_data_table(get_tables("plant"), "sqlt_data_1_2026_01")
    engine = create_mock_engine(dialect, executor=None)
    sql = month_subquery(table, engine.dialect)
    assert sql.startswith("(SELECT ") and sql.endswith(") src")
    assert "stringvalue" not in sql and "t_stamp" in sql
    assert "FROM plant.sqlt_data_1_2026_01" in sql
