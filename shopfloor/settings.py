"""Embedded defaults, read from the environment at call time (never at import time)."""

import os
import re
from pathlib import Path

from shopfloor.errors import UserError
from shopfloor.identifiers import check_identifier, check_optional_identifier


def shopfloor_home() -> Path:
    """Folder for the embedded defaults: ``$SHOPFLOOR_HOME`` or ``./.shopfloor``."""
    return Path(os.environ.get("SHOPFLOOR_HOME") or ".shopfloor").resolve()


def default_sqlite_url() -> str:
    """The embedded SQLite database every default database block points at."""
    return f"sqlite+pysqlite:///{shopfloor_home() / 'shopfloor.db'}"


def db_schema() -> str | None:
    """Optional schema for all tables (``$SHOPFLOOR_DB_SCHEMA``, e.g. ``flet_montrg``)."""
    return check_optional_identifier(os.environ.get("SHOPFLOOR_DB_SCHEMA"), "schema")


# The tables the flows read and write, by the name the code knows them as (DESIGN.md).
TABLE_KEYS = ("temperature_raw", "temperature_hourly", "location", "quarantine", "s3_object",
              "pipeline_watermark", "sqlth_te", "s3_listing", "anomaly", "quality_score",
              "temperature_daily", "collector_backlog", "tags", "tag_samples", "tag_hourly",
              "tag_daily")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def table_env_var(key: str) -> str:
    """The variable that renames table ``key``: ``SHOPFLOOR_TABLE_<KEY>``."""
    return f"SHOPFLOOR_TABLE_{key.upper()}"


def table_names() -> dict[str, str]:
    """The renamed tables: ``$SHOPFLOOR_TABLE_<KEY>`` per table (e.g.
    ``SHOPFLOOR_TABLE_TEMPERATURE_HOURLY=temperature``), each name checked. Tables
    without a variable keep their DESIGN.md name and are not listed."""
    names = {}
    for key in TABLE_KEYS:
        value = os.environ.get(table_env_var(key))
        if value:
            names[key] = check_identifier(value, f"table name ({table_env_var(key)})")
    return names


def raw_has_ingested_at() -> bool:
    """Whether ``temperature_raw`` has an ``ingested_at`` column (``$SHOPFLOOR_RAW_INGESTED_AT``,
    default true). ``false`` for a raw table its own writers fill without one: late data
    is then found by reading time (``capture_dt``) with a lateness allowance."""
    value = os.environ.get("SHOPFLOOR_RAW_INGESTED_AT", "").strip().lower()
    if value in ("", *_TRUE):
        return True
    if value in _FALSE:
        return False
    raise UserError(f"invalid SHOPFLOOR_RAW_INGESTED_AT {value!r}: use true or false")


# PostgreSQL memory units (https://www.postgresql.org/docs/current/config-setting.html).
_MEMORY = re.compile(r"^[1-9][0-9]{0,6}(kB|MB|GB)$")
DEFAULT_AGG_WORK_MEM = "256MB"


def aggregation_work_mem() -> str | None:
    """``work_mem`` for the hourly GROUP BY on PostgreSQL (``$SHOPFLOOR_AGG_WORK_MEM``,
    default 256MB; ``default`` leaves the server's setting).

    Set for that transaction only (``SET LOCAL``). With PostgreSQL's default of 4MB a
    window of a month spills its hash aggregate to disk in 65 batches (the planner
    guesses ten times the real number of groups); 256MB keeps a month of 200 locations
    (144,000 groups, 131MB of hash table) in memory. A window with more groups still
    spills, it is not refused.
    """
    value = os.environ.get("SHOPFLOOR_AGG_WORK_MEM", "").strip() or DEFAULT_AGG_WORK_MEM
    if value.lower() == "default":
        return None
    if not _MEMORY.match(value):
        raise UserError(f"invalid SHOPFLOOR_AGG_WORK_MEM {value!r}: use e.g. 256MB, "
                             "1GB or default")
    return value
