"""The key registry: which raw objects exist, their district, and registering new ones."""

import hashlib
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from shopfloor.db.schema import Tables
from shopfloor.db.upsert import upsert
from shopfloor.errors import UserError
from shopfloor.params import DISTRICT_PATTERN, OPTIONAL_PREFIX_PATTERN
from shopfloor.storage import ObjectInfo

JSON_SUFFIXES = (".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz")
# ``distrik=BRCB/...`` or ``dstrct_code=BRCB/...`` anywhere in the key (hive style) ...
_HIVE_DISTRICT = re.compile(r"(?:^|/)(?:distrik|dstrct_code|dstrct)=([A-Za-z0-9_-]{1,32})(?:/|$)")
# ... else a first folder that looks like a district code (upper case, 2-8 characters),
# the seed's ``BRCB/2024/...`` layout. Device folders (``line1-plc/...``) never match.
_LEADING_CODE = re.compile(r"^([A-Z][A-Z0-9]{1,7})/")


def key_hash(key: str) -> str:
    """SHA-256 hex of ``key``: the registry's unique column (keys outgrow index limits)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def district_from_key(key: str) -> str | None:
    """The district a key's layout names, or ``None`` when the layout says nothing."""
    match = _HIVE_DISTRICT.search(key) or _LEADING_CODE.match(key)
    return match.group(1) if match else None


def is_json_key(key: str) -> bool:
    """Whether ``key`` names raw JSON telemetry (plain or gzip)."""
    return key.lower().endswith(JSON_SUFFIXES)


def registry_rows(
    objects: Iterable[ObjectInfo], district: str | None, now: datetime
) -> tuple[list[dict[str, Any]], list[str]]:
    """Registry rows for JSON objects, and the keys skipped because no district is known.

    ``district`` (the flow parameter) wins over the key layout.
    """
    rows: list[dict[str, Any]] = []
    unknown: list[str] = []
    for obj in objects:
        if not is_json_key(obj.key):
            continue
        code = district or district_from_key(obj.key)
        if code is None:
            unknown.append(obj.key)
            continue
        rows.append({
            "key": obj.key, "key_hash": key_hash(obj.key), "distrik": code, "size": obj.size,
            "discovered_at": now, "compression_status": "PENDING", "attempts": 0,
        })
    return rows, unknown


LOOKUP_CHUNK = 500  # key hashes per IN (...): far below every dialect's parameter limit


def register_keys(conn: Connection, tables: Tables, rows: list[dict[str, Any]]) -> int:
    """Insert the rows whose key is new as PENDING (existing keys untouched); returns how many.

    Insert-or-ignore on ``key_hash`` makes it safe to repeat and safe against a
    concurrent registration of the same keys. The keys already registered are looked
    up by the listed hashes only, so the cost follows the listing, not the registry.
    """
    table = tables.s3_object
    hashes = [r["key_hash"] for r in rows]
    known: set[str] = set()
    for i in range(0, len(hashes), LOOKUP_CHUNK):
        chunk = hashes[i:i + LOOKUP_CHUNK]
        known.update(conn.execute(
            select(table.c.key_hash).where(table.c.key_hash.in_(chunk))).scalars())
    new_rows = [r for r in rows if r["key_hash"] not in known]
    # Still insert-or-ignore: a concurrent registration may have added some meanwhile.
    upsert(conn, table, new_rows, key_columns=["key_hash"], update_columns=[])
    return len(new_rows)


_DISTRICT = re.compile(DISTRICT_PATTERN)
_PREFIX = re.compile(OPTIONAL_PREFIX_PATTERN)


def check_district(value: str) -> str:
    """``value`` if it is a district code (letters, digits, ``_``, ``-``; at most 32): the
    flow parameter type ``DistrictCode``'s rule, for callers outside a flow."""
    if not isinstance(value, str) or not _DISTRICT.fullmatch(value):
        raise UserError(
            f"invalid district {value!r}: use 1-32 letters, digits, '_' or '-'"
        )
    return value


def check_prefix(value: str) -> str:
    """``value`` if it is a listing prefix inside the storage: ``""``, or folder names
    separated by ``/`` with no ``.``/``..`` (the flow parameter type's rule)."""
    if not isinstance(value, str) or not _PREFIX.fullmatch(value):
        raise UserError(
            f"invalid prefix {value!r}: use folder names of letters, digits, '_', '-', '.', "
            "'=' separated by '/' (no '..'), or '' for everything"
        )
    return value
