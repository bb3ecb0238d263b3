"""Recording a claim's outcome: key statuses and quarantined records, in one transaction."""

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, delete

from shopfloor.compaction.claims import finish_claim
from shopfloor.compaction.keys import key_hash
from shopfloor.db.schema import Tables
from shopfloor.errors import DataIntegrityError
from shopfloor.quality import (
    BatchCounts,
    QuarantinedRow,
    Subject,
    quality_row,
    write_quality,
    write_quarantine,
)

SOURCE_PREFIX = "s3_compaction:"
MAX_SOURCE = 255
QUALITY_FLOW = "s3-compaction"


def object_quality_rows(run_id: str, succeeded: Sequence[str], quarantined: Mapping[str, str],
                        counts: Mapping[str, tuple[int, int]]) -> list[dict[str, Any]]:
    """One ``quality_score`` row per object: its records in, published (valid) and not
    (quarantined). An object quarantined whole publishes nothing: validity 0, and an
    object with no record at all (empty) is incomplete (expected 1 record, got 0).
    Uniqueness and timeliness are judged at capture: 1.0 here."""
    rows = []
    for key in [*succeeded, *quarantined]:
        good, bad = counts.get(key, (0, 0))
        n = good + bad
        valid = good if key not in quarantined else 0
        rows.append(quality_row(
            Subject(QUALITY_FLOW, key),
            BatchCounts(rows_in=n, rows_valid=valid, rows_quarantined=n - valid,
                        expected=None if n else 1), run_id))
    return rows


def quarantine_source(key: str) -> str:
    """The ``quarantine.source`` of an object's records: its key, or its hash if too long."""
    source = SOURCE_PREFIX + key
    return source if len(source) <= MAX_SOURCE else f"{SOURCE_PREFIX}sha256:{key_hash(key)}"


def record_outcome(conn: Connection, tables: Tables, run_id: str, succeeded: Sequence[str],
                   quarantined: Mapping[str, str],
                   bad_records: Mapping[str, Sequence[QuarantinedRow]],
                   counts: Mapping[str, tuple[int, int]] | None = None) -> tuple[int, int]:
    """Mark keys and store bad records (replacing any earlier attempt's) and, with
    ``counts`` (per key: records published, not published), a quality row per object;
    returns counts.

    Returns ``(keys updated, quarantine rows written)``.
    """
    updated = finish_claim(conn, tables, run_id, succeeded, quarantined)
    expected = len(succeeded) + len(quarantined)
    if updated != expected:
        # Raising rolls the whole outcome back: the run that took the keys over cleans
        # this claim's files by its manifest and writes them again itself.
        raise DataIntegrityError(
            f"{expected - updated} of {expected} keys of claim {run_id} were taken over by "
            "another run (is claim_ttl_minutes shorter than a run?)"
        )
    written = 0
    for key, rows in bad_records.items():
        source = quarantine_source(key)
        conn.execute(delete(tables.quarantine).where(tables.quarantine.c.source == source))
        written += write_quarantine(conn, tables, list(rows), source, run_id)
    if counts is not None:
        write_quality(conn, tables, object_quality_rows(run_id, succeeded, quarantined, counts))
    return updated, written
