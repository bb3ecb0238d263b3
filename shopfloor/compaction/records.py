"""Records with an unusable heartbeat inside otherwise good objects, with their reasons."""

import gzip
import json
import math
from collections.abc import Sequence

import duckdb

from shopfloor.compaction.sql import MAX_EPOCH_US
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


def usable_heartbeat(value: object) -> bool:
    """Whether compaction publishes a record with this heartbeat: the rule of
    :func:`shopfloor.compaction.sql.compaction_select` (a number, or a string holding
    one; unit told by magnitude; between 1970 and 2100), in Python. A unit test holds
    the two together."""
    if value is None:
        return False
    try:
        hb = float(value.strip('"')) if isinstance(value, str) else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    if not math.isfinite(hb):
        return False
    us = hb * 1e6 if hb < 1e11 else hb * 1e3 if hb < 1e14 else hb if hb < 1e17 else hb / 1e3
    return 0 < round(us) < MAX_EPOCH_US


def object_records(body: bytes, key: str) -> list[tuple[int, object]]:
    """``(line, record)`` of an object: JSON lines numbered from 1 (blank lines counted,
    not returned), or a JSON array's records numbered from 1; ``.gz`` is unpacked."""
    if key.endswith(".gz"):
        body = gzip.decompress(body)
    text = body.decode("utf-8")
    if text.lstrip().startswith("["):
        return list(enumerate(json.loads(text), start=1))
    return [(n, json.loads(line)) for n, line in enumerate(text.split("\n"), start=1)
            if line.strip()]


def _landed_reasons(record: dict) -> list[Reason]:
    reasons = record.get("reasons")
    return [Reason(r.get("column"), str(r.get("check")), r.get("value"))
            for r in (reasons if isinstance(reasons, list) else []) if isinstance(r, dict)]


def unpublished_records(body: bytes, key: str) -> tuple[int, list[QuarantinedRow]]:
    """The records of an object compaction does not publish, with where they were.

    A landed line whose ``verdict`` is ``rejected`` (its reasons as landed) or whose
    heartbeat is unusable (see :func:`heartbeat_reason`). Returns how many there are and
    the first :data:`MAX_BAD_RECORDS_PER_OBJECT`, each with ``source_key`` and
    ``source_line``; the record keeps ``source_file`` (as before) and drops ``reasons``
    (they are the quarantine row's reasons).
    """
    found, total = [], 0
    for line, record in object_records(body, key):
        if not isinstance(record, dict):
            continue
        reasons = _landed_reasons(record) if record.get("verdict") == "rejected" else []
        if record.get("verdict") == "rejected" and not reasons:
            reasons = [Reason("verdict", "rejected", "rejected")]
        if not usable_heartbeat(record.get("heartbeat")):
            reasons.append(heartbeat_reason(record.get("heartbeat")))
        if not reasons:
            continue
        total += 1
        if len(found) < MAX_BAD_RECORDS_PER_OBJECT:
            kept = {k: v for k, v in record.items() if k != "reasons"}
            found.append(QuarantinedRow({**kept, "source_file": key}, reasons, key, line))
    return total, found


def is_rejected(row: QuarantinedRow) -> bool:
    """Whether the row was rejected by its landed verdict (not only by its heartbeat)."""
    return row.record.get("verdict") == "rejected"
