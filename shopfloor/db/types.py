"""Portable column types."""

from datetime import UTC, datetime

from sqlalchemy import DateTime
from sqlalchemy.dialects import mssql, mysql
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator):
    """A timestamp stored as naive UTC on every dialect, returned as an aware UTC datetime.

    SQLite, MySQL and SQL Server have no portable time-zone-aware type, so storing
    naive UTC everywhere keeps comparisons and GROUP BYs identical across dialects.
    Naive datetimes given to it are taken to be UTC already.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect):
        # Keep microseconds: MySQL's DATETIME and SQL Server's DATETIME round them away.
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        if dialect.name == "mssql":
            return dialect.type_descriptor(mssql.DATETIME2(precision=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite through raw SQL
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)
