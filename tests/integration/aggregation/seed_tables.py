"""The seed's tables as the systems shopfloor replaces have them, in a database of their own.

``flet_montrg.temperature_raw`` has no ``ingested_at`` (and no ``device``); the hourly
table is ``flet_montrg.temperature`` without ``sample_count`` and ``updated_at``.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text

from tests.pg import throwaway_database

SCHEMA = "flet_montrg"
SEED_DDL = (
    f"CREATE SCHEMA {SCHEMA}",
    f"CREATE TABLE {SCHEMA}.temperature_raw (loc_id varchar(32) NOT NULL, "
    "capture_dt timestamp NOT NULL, temperature double precision, "
    "humidity double precision, pcv_temperature double precision, "
    "PRIMARY KEY (loc_id, capture_dt))",
    f"CREATE TABLE {SCHEMA}.temperature (loc_id varchar(32) NOT NULL, ymd varchar(8) NOT NULL, "
    "hh varchar(2) NOT NULL, temperature_max double precision, "
    "temperature_avg double precision, humidity_max double precision, "
    "humidity_avg double precision, pcv_temperature_max double precision, "
    "pcv_temperature_avg double precision, PRIMARY KEY (loc_id, ymd, hh))",
)
# The environment that points shopfloor at them.
SEED_ENV = {"SHOPFLOOR_DB_SCHEMA": SCHEMA, "SHOPFLOOR_TABLE_TEMPERATURE_HOURLY": "temperature",
            "SHOPFLOOR_RAW_INGESTED_AT": "false"}


@contextmanager
def seed_database(server_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database holding the seed's tables (the session database of
    the worker has DESIGN.md's tables in ``flet_montrg`` already); dropped at the end."""
    with throwaway_database(server_url, "shopfloor_seed") as url:
        engine = create_engine(url)
        with engine.begin() as conn:
            for ddl in SEED_DDL:
                conn.execute(text(ddl))
        engine.dispose()
        yield url
