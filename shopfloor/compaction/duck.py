"""DuckDB connections for compaction: memory limit, spill folder, access to the storage."""

import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

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


SPILL_PREFIX = "shopfloor-duckdb-"
_OWNER = "owner.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clean_stale_spill_folders(parent: str | None = None) -> int:
    """Remove the spill folders of runs that died without cleaning up (``kill -9``, OOM).

    A folder belongs to the process whose id it records; one whose process is gone is
    stale. Folders of live runs (concurrent compactions on this host) are left alone.
    Returns how many folders were removed.
    """
    removed = 0
    for folder in Path(parent or tempfile.gettempdir()).glob(SPILL_PREFIX + "*"):
        try:
            pid = int((folder / _OWNER).read_text())
        except (OSError, ValueError):
            continue  # not ours, or being created right now
        if not _alive(pid):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


@contextmanager
def spill_folder(parent: str | None = None) -> Iterator[str]:
    """A fresh folder for DuckDB to spill to, owned by this process, removed at the end;
    stale folders of dead runs are removed first."""
    clean_stale_spill_folders(parent)
    folder = tempfile.mkdtemp(prefix=SPILL_PREFIX, dir=parent)
    Path(folder, _OWNER).write_text(str(os.getpid()))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
