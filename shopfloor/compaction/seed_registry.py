"""The seed's S3 registry mapped onto ``s3_object``: statuses, districts, one row per key.

Pure functions (no database): :mod:`shopfloor.compaction.seed_import` reads the seed's
rows in chunks and writes what these return.

Status mapping (seed value, case and surrounding spaces ignored -> ``s3_object``):

- ``SUCCESS`` -> ``SUCCESS``, with the seed's run id: compacted, never claimed again.
- ``PENDING`` or empty (``NULL``, ``''``) -> ``PENDING``: compacted by the next run.
- ``CLAIMED``, ``IN_PROGRESS``, ``PROCESSING``, ``RUNNING`` -> ``PENDING`` without a run
  id: a claim of a run that is gone once the seed is switched off; it was never
  finished, so it is compacted again (compaction writes deterministic output names, so a
  partial output of the dead run is replaced, not duplicated).
- ``FAILED`` -> ``FAILED`` (parked, as ours are after too many attempts), or ``PENDING``
  with ``retry_failed``: the seed gave up on it, so by default it stays given up.
- ``QUARANTINED`` -> ``QUARANTINED``.
- anything else: refused (the import writes nothing) unless an extra mapping names it.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shopfloor.compaction.keys import district_from_key, is_json_key, key_hash
from shopfloor.errors import ShopfloorError, UserError

OUR_STATUSES = ("PENDING", "SUCCESS", "FAILED", "QUARANTINED")
TERMINAL = frozenset({"SUCCESS", "FAILED", "QUARANTINED"})
SEED_STATUS_MAP: Mapping[str, str] = {
    "": "PENDING",
    "PENDING": "PENDING",
    "SUCCESS": "SUCCESS",
    "FAILED": "FAILED",
    "QUARANTINED": "QUARANTINED",
    # Claims of a run that no longer exists: give them to the next run.
    "CLAIMED": "PENDING",
    "IN_PROGRESS": "PENDING",
    "PROCESSING": "PENDING",
    "RUNNING": "PENDING",
}
MAX_RUN_ID = 64  # s3_object.compression_run_id
# When two rows of the seed name one key, the furthest-along status wins.
_RANK = {"PENDING": 0, "FAILED": 1, "QUARANTINED": 2, "SUCCESS": 3}


def status_map(extra: Mapping[str, str] | None = None,
               retry_failed: bool = False) -> dict[str, str]:
    """The seed -> ``s3_object`` status mapping, with ``extra`` entries (seed value ->
    one of :data:`OUR_STATUSES`) added or overriding, and FAILED retried if asked."""
    mapping = dict(SEED_STATUS_MAP)
    if retry_failed:
        mapping["FAILED"] = "PENDING"
    for seed, ours in (extra or {}).items():
        if ours.strip().upper() not in OUR_STATUSES:
            raise ShopfloorError(
                f"status map {seed}={ours}: the target must be one of {', '.join(OUR_STATUSES)}")
        mapping[seed.strip().upper()] = ours.strip().upper()
    return mapping


def normalise_status(value: Any) -> str:
    """A seed status as the mapping's key: ``None`` is ``''``, case and spaces ignored."""
    return "" if value is None else str(value).strip().upper()


def check_statuses(seen: Iterable[Any], mapping: Mapping[str, str]) -> None:
    """Refuse, before anything is written, seed statuses the mapping does not know."""
    unknown = sorted({normalise_status(s) for s in seen} - set(mapping))
    if unknown:
        raise ShopfloorError(
            f"the seed registry has statuses shopfloor does not know: {', '.join(unknown)}; "
            "map them with --status-map SEED=PENDING|SUCCESS|FAILED|QUARANTINED")


@dataclass(frozen=True)
class SeedRow:
    """One row of the seed registry as read (``district`` only if a column holds it)."""

    key: str
    status: Any
    run_id: Any = None
    district: str | None = None


def registry_row(seed: SeedRow, mapping: Mapping[str, str], default_district: str | None,
                 now: datetime, source: str) -> dict[str, Any] | str:
    """The ``s3_object`` row for ``seed``, or the reason it is skipped
    (``"not_json"``, ``"no_district"``).

    The district comes from the seed's column if given, else from the key layout
    (:func:`~shopfloor.compaction.keys.district_from_key`), else ``default_district``.
    """
    if not is_json_key(seed.key):
        return "not_json"
    code = seed.district or district_from_key(seed.key) or default_district
    if not code:
        return "no_district"
    seed_status = normalise_status(seed.status)
    status = mapping[seed_status]
    # A run id means "who finished it" for a terminal status; a PENDING key has no owner.
    run_id = None if status == "PENDING" or seed.run_id is None else str(seed.run_id)
    if run_id is not None and len(run_id) > MAX_RUN_ID:
        raise ShopfloorError(f"run id of {seed.key!r} is longer than {MAX_RUN_ID} characters")
    error = (f"imported from {source}: seed status {seed_status}"
             if status in ("FAILED", "QUARANTINED") else None)
    return {
        "key": seed.key, "key_hash": key_hash(seed.key), "distrik": code, "size": None,
        "discovered_at": now, "compression_run_id": run_id, "claimed_at": None,
        "compression_status": status, "attempts": 0, "error": error,
        # When the seed finished it is not known; ``discovered_at`` says when it came in.
        "completed_at": None,
    }


def furthest_per_key(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per key hash: of duplicates in the seed, the furthest-along status."""
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        held = best.get(row["key_hash"])
        if held is None or _RANK[row["compression_status"]] > _RANK[held["compression_status"]]:
            best[row["key_hash"]] = row
    return list(best.values())


def parse_status_map(items: Iterable[str]) -> dict[str, str]:
    """``["DONE=SUCCESS", ...]`` (the CLI's ``--status-map``) as a mapping."""
    mapping: dict[str, str] = {}
    for item in items:
        seed, sep, ours = item.partition("=")
        if not sep or not ours.strip():
            raise UserError(f"--status-map {item!r}: expected SEED=OURS, e.g. DONE=SUCCESS")
        mapping[seed] = ours
    return mapping
