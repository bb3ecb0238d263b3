"""DuckDB connections for compaction: memory limit, spill folder, access to the storage."""

import re
from collections.abc import Iterable

import duckdb

from shopfloor.errors import ShopfloorError
from shopfloor.params import RAM_LIMIT_PATTERN
from shopfloor.storage import StorageLocation
from shopfloor.storage_engines import attach_duckdb

_RAM = re.compile(RAM_LIMIT_PATTERN)


def check_ram_limit(value: str) -> str:
    """``value`` if it is a DuckDB memory size like ``10GB`` or ``512MiB``, else raise.

    The same pattern as the flow's ``RamLimit`` parameter type; checked here too because
    :func:`connect` is also called outside the flow (benchmarks, scripts).
    """
    if not isinstance(value, str) or not _RAM.fullmatch(value):
        raise ShopfloorError(
            f"invalid ram_limit {value!r}: use a size such as '1GB', '512MB' or '10GiB'"
        )
    return value.strip()


def connect(ram_limit: str, temp_dir: str,
            locations: Iterable[StorageLocation] = ()) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that spills to ``temp_dir`` past ``ram_limit`` and can read and
    write ``locations`` (remote ones get httpfs, loaded offline, and a secret each)."""
    con = duckdb.connect()
    con.execute("SET memory_limit = $v", {"v": check_ram_limit(ram_limit)})
    con.execute("SET temp_directory = $v", {"v": temp_dir})
    # Output order does not matter for partitioned Parquet; dropping it lets COPY stream.
    con.execute("SET preserve_insertion_order = false")
    attach_duckdb(con, locations)
    return con
