"""What a lake-maintenance run did and the state it ends in, decided from its partitions'
results (the flow only applies it)."""

from collections.abc import Sequence
from datetime import date
from typing import Any

from shopfloor.lake.merge import PartitionResult
from shopfloor.outcome import COMPLETED, Verdict


def summarise(results: Sequence[PartitionResult]) -> dict[str, Any]:
    """Counts over every partition touched."""
    merged = [r for r in results if r.status == "merged"]
    return {
        "partitions_merged": len(merged),
        "partitions_skipped": sum(r.status == "skipped" for r in results),
        "partitions_failed": sum(r.status == "failed" for r in results),
        "recovered": sum(len(r.recovered) for r in results),
        "files_in": sum(r.files_in for r in merged),
        "files_out": sum(r.files_out for r in merged),
        "rows": sum(r.rows for r in merged),
        "bytes_in": sum(r.bytes_in for r in merged),
        "bytes_out": sum(r.bytes_out for r in merged),
    }


def artifact_rows(results: Sequence[PartitionResult]) -> list[dict[str, Any]]:
    """One artifact row per partition touched, or one saying nothing was due."""
    return [r.row() for r in results] or [{"partition": "(none)", "status": "nothing due"}]


def description(summary: dict[str, Any], closed_before: date) -> str:
    """The artifact's description: what was merged and what failed."""
    return (f"Closed before {closed_before}: {summary['partitions_merged']} merged "
            f"({summary['files_in']} files -> {summary['files_out']}), "
            f"{summary['partitions_failed']} failed")


def verdict(results: Sequence[PartitionResult], summary: dict[str, Any]) -> Verdict:
    """Failed when every partition tried failed, Degraded when some did, Idle when
    nothing was merged or recovered (docs/lake_maintenance.md)."""
    failed = summary["partitions_failed"]
    if failed and failed == len([r for r in results if r.status != "skipped"]):
        return Verdict("failed", f"every partition tried failed ({failed}): "
                       + "; ".join(r.message for r in results if r.status == "failed")[:500])
    if failed:
        return Verdict("degraded", f"{failed} partitions failed, "
                                   f"{summary['partitions_merged']} merged")
    if not summary["partitions_merged"] and not summary["recovered"]:
        return Verdict("idle", "no closed partition with small files")
    return COMPLETED
