"""What a ``spark-sensor-extraction`` run works on and how it ends: the job from its
parameters, the slices to extract, the re-check's report and the final verdict (the flow
only composes tasks around these)."""

from collections.abc import Sequence
from typing import Any

from shopfloor.historian.lake import rows_per_file
from shopfloor.historian.plan import MonthSlice
from shopfloor.historian.recheck import DayCheck
from shopfloor.historian.tags import Tag
from shopfloor.outcome import COMPLETED, Verdict
from shopfloor.spark.extract import ExtractionJob, MonthResult


def make_job(output_prefix: str, tags: Sequence[Tag], tag_patterns: Sequence[str],
             good_quality: Sequence[int], num_partitions: int, target_file_mb: int,
             max_records_per_file: int | None, layout: str) -> ExtractionJob:
    """The values every month of the run shares: patterns without duplicates, quality
    codes sorted, rows per file from the target size (capped by the parameter), and
    per-driver reads when the tags carry their Ignition driver."""
    return ExtractionJob(output_prefix, list(tags), list(dict.fromkeys(tag_patterns)),
                         sorted(set(good_quality)), num_partitions,
                         rows_per_file(target_file_mb, max_records_per_file),
                         drivers=any(t.drvid is not None for t in tags), layout=layout)


def work_list(present: Sequence[MonthSlice], redo: Sequence[MonthSlice]
              ) -> list[tuple[MonthSlice, str]]:
    """The slices to extract in order: the window's months, then the re-checked days
    that changed."""
    return [(m, "window") for m in present] + [(d, "recheck") for d in redo]


def ordered(results: list[MonthResult]) -> list[MonthResult]:
    """The summary's order: the window's months, then the re-checked days, by date."""
    return sorted(results, key=lambda r: (r.kind == "recheck", r.month))


def recheck_rows(checks: Sequence[DayCheck], results: Sequence[MonthResult]
                 ) -> list[dict[str, Any]]:
    """One artifact row per re-checked day with what was done about it: ``rewritten``,
    the failed rewrite's status, or ``unchanged``; one ``no table`` row when the re-check
    window had no table."""
    done = {r.month: r.status for r in results if r.kind == "recheck"}
    rows = [{**vars(c), "action": ("rewritten" if done.get(c.date) == "ok" else
                                   done.get(c.date, "unchanged") if c.changed else "unchanged")}
            for c in checks]
    return rows or [{"date": "", "action": "no table"}]


def recheck_description(rows: Sequence[dict[str, Any]]) -> str:
    """The re-check artifact's description."""
    return (f"Re-check: {sum(r['action'] == 'rewritten' for r in rows)} day(s) rewritten "
            "(rows per tag and day differed between source and lake)")


def counts_line(results: Sequence[MonthResult]) -> str:
    """The run's one log line: months ok, missing, failed, days rewritten."""
    def count(status: str, kind: str | None = None) -> int:
        return sum(r.status == status and (kind is None or r.kind == kind) for r in results)
    return (f"{count('ok', 'window')} month(s) ok, {count('missing')} missing, "
            f"{count('failed')} failed, {count('ok', 'recheck')} day(s) rewritten by the "
            "re-check")


def verdict(results: Sequence[MonthResult]) -> Verdict:
    """Failed when a month (or the re-check) failed, naming each with its error; a
    missing monthly table is not a failure (the summary lists it)."""
    failed = [r for r in results if r.status == "failed"]
    if failed:
        return Verdict("failed", "failed month(s): " + "; ".join(
            f"{r.month}: {r.error}" for r in failed))
    return COMPLETED
