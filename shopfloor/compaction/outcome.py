"""What a compaction run achieved, and the state it ends in (the flow only applies it)."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shopfloor.compaction.compact import PHASES, CompactResult
from shopfloor.compaction.status import object_quality_rows
from shopfloor.outcome import COMPLETED, Verdict
from shopfloor.quality import artifact_scores, combined


@dataclass
class Served:
    """The districts a run served: keys claimed, results, and the districts that failed
    (with whether a failure was an integrity stop, e.g. a claim taken over)."""

    claimed: int = 0
    districts: list[str] = field(default_factory=list)
    results: list[CompactResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    integrity: bool = False


def partitions(result: CompactResult) -> int:
    """Partitions a result wrote to (final files are .../hiveperiod=/dstrct_code=/part-)."""
    return len({f.rsplit("/", 1)[0] for f in result.files})


def summarise(label: str, served: Served, seconds: float) -> dict[str, Any]:
    """The run's summary row: counts, bytes, seconds per step, the objects' scores."""
    results = served.results
    return {
        "district": label, "keys_claimed": served.claimed,
        "keys_succeeded": sum(len(r.succeeded) for r in results),
        "keys_quarantined": sum(len(r.quarantined) for r in results),
        "records_quarantined": sum(len(v) for r in results for v in r.bad_records.values()),
        "rows_in": sum(r.rows_in for r in results),
        "rows_out": sum(r.rows_out for r in results),
        "bytes_in": sum(r.bytes_in for r in results),
        "bytes_out": sum(r.bytes_out for r in results),
        "parquet_files": sum(len(r.files) for r in results), "duration_s": round(seconds, 2),
        # Where the compaction's time went (wall seconds per step, all districts).
        **{f"{p}_s": round(sum(r.seconds.get(p, 0.0) for r in results), 2) for p in PHASES},
        # The run's objects taken together (one quality_score row per object).
        **artifact_scores(combined([q for r in results for q in object_quality_rows(
            "", r.succeeded, r.quarantined, r.counts)])),
    }


def verdict(summary: dict[str, Any], served: Served) -> Verdict:
    """The run's final state (docs/s3_compaction.md, "Outcomes")."""
    if served.failures:
        return Verdict("failed", "; ".join(served.failures), served.integrity)
    if not served.claimed:
        return Verdict("idle", "nothing to do: no PENDING keys")
    bad, good = summary["keys_quarantined"], summary["keys_succeeded"]
    if bad and not good:
        return Verdict("failed", f"every one of the {bad} objects claimed was quarantined "
                                 "(see s3_object.error): nothing published")
    if bad:
        return Verdict("degraded", f"{bad} of {served.claimed} objects quarantined "
                                   "(see s3_object.error)")
    return COMPLETED


def artifact_description(served: Served, target_prefix: str) -> str:
    if not served.claimed:
        return "nothing to do: no PENDING keys"
    return f"s3-compaction of {', '.join(served.districts)} into {target_prefix}"


def registration_description(counts: dict[str, int], prefix: str, raw_logs: str) -> str:
    """The description of a registration run's artifact."""
    return (f"Keys under {prefix or '(all)'!r} of {raw_logs}: {counts['listed']} listed, "
            f"{counts['json']} JSON, {counts['new']} new, {counts['known']} known, "
            f"{counts['no_district']} without district")


def registration_verdict(counts: dict[str, int]) -> Verdict:
    """A registration run's final state (docs/s3_compaction.md): Failed when every JSON
    key listed names no district, Degraded when some do, Idle when nothing was new."""
    skipped = counts["no_district"]
    if skipped and counts["new"] == 0 and counts["known"] == 0:
        return Verdict("failed", f"all {skipped} JSON keys listed name no district: nothing "
                       "registered (land them under dstrct_code=<code>/ or pass distrik=)")
    if skipped:
        return Verdict("degraded", f"{skipped} JSON keys skipped: they name no district; "
                                   f"{counts['new']} new keys registered")
    if counts["new"] == 0:
        return Verdict("idle", f"nothing new: {counts['listed']} objects listed")
    return COMPLETED


def metric_rows(counts: dict[str, Any]) -> list[dict[str, Any]]:
    """A summary as artifact rows, one ``metric``/``value`` pair a line."""
    return [{"metric": k, "value": v} for k, v in counts.items()]


__all__: Sequence[str] = ["Served", "Verdict", "artifact_description", "metric_rows",
                          "partitions", "registration_description", "registration_verdict",
                          "summarise", "verdict"]
