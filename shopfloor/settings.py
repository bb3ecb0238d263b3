"""Embedded defaults, read from the environment at call time (never at import time)."""

import os
from pathlib import Path

from shopfloor.identifiers import check_optional_identifier


def shopfloor_home() -> Path:
    """Folder for the embedded defaults: ``$SHOPFLOOR_HOME`` or ``./.shopfloor``."""
    return Path(os.environ.get("SHOPFLOOR_HOME") or ".shopfloor").resolve()


def default_sqlite_url() -> str:
    """The embedded SQLite database every default database block points at."""
    return f"sqlite+pysqlite:///{shopfloor_home() / 'shopfloor.db'}"


def db_schema() -> str | None:
    """Optional schema for all tables (``$SHOPFLOOR_DB_SCHEMA``, e.g. ``flet_montrg``)."""
    return check_optional_identifier(os.environ.get("SHOPFLOOR_DB_SCHEMA"), "schema")
