"""Records with an unusable heartbeat inside otherwise good objects, with their reasons."""

import math
from collections.abc import Sequence

import duckdb

from shopfloor.quality import QuarantinedRow, Reason

MAX_BAD_RECORDS_PER_OBJECT = 1000  # beyond this an object's rejects are counted, not stored


def _plain(value: object) -> object:
    """A JSON-friendly value (timestamps as ISO text, NaN as text, other objects as text)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def heartbeat_reason(value: object) -> Reason:
    """Why a heartbeat was rejected: missing, not numeric, or out of range."""
    if value is None:
        return Reason("heartbeat", "missing", None)
    try:
        number = float(str(value).strip('"'))
    except ValueError:
        return Reason("heartbeat", "not_numeric", value)
    if not math.isfinite(number):
        return Reason("heartbeat", "not_numeric", value)
    return Reason("heartbeat", "out_of_range_1970_2100", value)


def bad_heartbeat_rows(con: duckdb.DuckDBPyConnection, files: Sequence[str],
                       keys: set[str]) -> dict[str, list[QuarantinedRow]]:
    """The rejected records of ``keys`` from the staged invalid partition, per key."""
    if not keys:
        return {}
    cur = con.execute(
        "SELECT * EXCLUDE (datetime_wita) FROM (SELECT *, row_number() OVER "
        "(PARTITION BY source_file) AS __n FROM read_parquet($f, hive_partitioning=false)) "
        "WHERE source_file IN (SELECT unnest($k)) AND __n <= $cap",
        {"f": list(files), "k": sorted(keys), "cap": MAX_BAD_RECORDS_PER_OBJECT},
    )
    names = [d[0] for d in cur.description]
    found: dict[str, list[QuarantinedRow]] = {}
    for row in cur.fetchall():
        record = {n: _plain(v) for n, v in zip(names, row, strict=True)
                  if n != "__n" and v is not None}
        found.setdefault(record["source_file"], []).append(
            QuarantinedRow(record, [heartbeat_reason(record.get("heartbeat"))]))
    return found
