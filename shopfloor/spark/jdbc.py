"""JDBC settings from an SQLAlchemy URL, and the partitioned, filtered read of one month."""

from dataclasses import dataclass, field

from sqlalchemy import Table, select
from sqlalchemy.engine import URL, Dialect, make_url

from shopfloor.errors import ShopfloorError

DRIVERS = {
    "postgresql": "org.postgresql.Driver",
    "mysql": "org.mariadb.jdbc.Driver",
    "mssql": "com.microsoft.sqlserver.jdbc.SQLServerDriver",
    "sqlite": "org.sqlite.JDBC",
}
# The columns the extraction needs, with fixed Spark types whatever the database reports
# (SQLite's declared types, for one, do not map cleanly).
READ_COLUMNS = ("tagid", "intvalue", "floatvalue", "dataintegrity", "t_stamp")
CUSTOM_SCHEMA = "tagid INT, intvalue BIGINT, floatvalue DOUBLE, dataintegrity INT, t_stamp BIGINT"


@dataclass(frozen=True)
class JdbcSource:
    """A JDBC URL without credentials, the driver class, and the credentials apart."""

    kind: str
    url: str
    driver: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    def options(self) -> dict[str, str]:
        """Reader options: url, driver, user, password (never log these)."""
        opts = {"url": self.url, "driver": self.driver}
        if self.user:
            opts["user"] = self.user
        if self.password:
            opts["password"] = self.password
        return opts


def _kind(u: URL) -> str:
    backend = u.get_backend_name()
    if backend == "mariadb":
        return "mysql"
    if backend not in DRIVERS:
        raise ShopfloorError(f"no JDBC mapping for database {backend!r}: "
                             f"use one of {sorted(DRIVERS)}")
    return backend


def jdbc_source(sqlalchemy_url: str | URL) -> JdbcSource:
    """Map an SQLAlchemy URL to JDBC (PostgreSQL, MySQL/MariaDB, SQL Server, SQLite)."""
    u = make_url(sqlalchemy_url)
    kind = _kind(u)
    if kind == "sqlite":
        if not u.database or u.database == ":memory:":
            raise ShopfloorError("an in-memory SQLite database cannot be read through JDBC")
        return JdbcSource(kind, f"jdbc:sqlite:{u.database}", DRIVERS[kind])
    host = u.host or "localhost"
    if kind == "postgresql":
        query = "&".join(f"{k}={v}" for k, v in sorted(u.query.items()) if isinstance(v, str))
        url = f"jdbc:postgresql://{host}:{u.port or 5432}/{u.database or ''}"
        url += f"?{query}" if query else ""
    elif kind == "mysql":
        # permitMysqlScheme lets MariaDB Connector/J 3.x accept jdbc:mysql:, which picks
        # Spark's MySQL dialect (2.x accepts it anyway).
        url = f"jdbc:mysql://{host}:{u.port or 3306}/{u.database or ''}?permitMysqlScheme"
    else:
        url = (f"jdbc:sqlserver://{host}:{u.port or 1433};databaseName={u.database or ''};"
               "encrypt=false")
    return JdbcSource(kind, url, DRIVERS[kind], u.username, u.password)


def month_subquery(table: Table, dialect: Dialect) -> str:
    """``(SELECT tagid, ... FROM <table>) src`` quoted for the source's dialect.

    The table name was checked strictly; the query has no values, the filters are
    pushed down by Spark as typed literals.
    """
    stmt = select(*(table.c[c] for c in READ_COLUMNS))
    sql = str(stmt.compile(dialect=dialect))
    return f"({' '.join(sql.split())}) src"
