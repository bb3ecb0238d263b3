"""What a spark extraction run works on and how it ends, decided in shopfloor."""

from shopfloor.historian.lake import rows_per_file
from shopfloor.historian.plan import MonthSlice
from shopfloor.historian.recheck import DayCheck
from shopfloor.historian.tags import Tag
from shopfloor.spark.extract import MonthResult
from shopfloor.spark.run import (
    counts_line,
    make_job,
    ordered,
    recheck_description,
    recheck_rows,
    verdict,
    work_list,
)


def _slice(label: str) -> MonthSlice:
    return MonthSlice(f"sqlt_data_1_{label[:4]}_{label[5:7]}", label, 0, 86_400_000)


def test_the_job_dedups_patterns_sorts_codes_and_sizes_files():
    job = make_job("out", [Tag(1, "a/b")], ["%", "a%", "%"], [192, 0, 192], 4, 1, None, "date")
    assert (job.tag_patterns, job.good_quality, job.drivers) == (["%", "a%"], [0, 192], False)
    assert job.max_records_per_file == rows_per_file(1)
    capped = make_job("out", [Tag(1, "a/b", drvid=3)], ["%"], [192], 4, 128, 10, "tag")
    assert (capped.max_records_per_file, capped.drivers, capped.layout) == (10, True, "tag")


def test_the_window_comes_before_the_rechecked_days():
    months, days = [_slice("2026-01")], [_slice("2025-12-30")]
    assert [(m.month, k) for m, k in work_list(months, days)] == [
        ("2026-01", "window"), ("2025-12-30", "recheck")]
    results = [MonthResult("2025-12-30", "t", kind="recheck"), MonthResult("2026-02", "t"),
               MonthResult("2026-01", "t")]
    assert [r.month for r in ordered(results)] == ["2026-01", "2026-02", "2025-12-30"]


def test_recheck_rows_say_what_was_done_per_day():
    checks = [DayCheck("2025-12-29", 5, 5, 0), DayCheck("2025-12-30", 6, 4, 1),
              DayCheck("2025-12-31", 6, 4, 2)]
    results = [MonthResult("2025-12-30", "t", status="ok", kind="recheck"),
               MonthResult("2025-12-31", "t", status="failed", kind="recheck"),
               MonthResult("2025-12-29", "t", status="ok")]  # a window month: not a re-check
    rows = recheck_rows(checks, results)
    assert [r["action"] for r in rows] == ["unchanged", "rewritten", "failed"]
    assert recheck_description(rows).startswith("Re-check: 1 day(s) rewritten")
    assert recheck_rows([], results) == [{"date": "", "action": "no table"}]


def test_a_failed_month_fails_the_run_a_missing_one_does_not():
    ok = MonthResult("2026-01", "t", status="ok")
    missing = MonthResult("2026-02", "t", status="missing")
    assert verdict([ok, missing]).kind == "completed"
    failed = MonthResult("2026-03", "t", status="failed", error="boom")
    recheck = MonthResult("recheck", "", status="failed", kind="recheck", error="gone")
    v = verdict([ok, failed, recheck])
    assert (v.kind, v.message) == ("failed", "failed month(s): 2026-03: boom; recheck: gone")
    day = MonthResult("2025-12-30", "t", status="ok", kind="recheck")
    assert counts_line([ok, missing, failed, day]) == (
        "1 month(s) ok, 1 missing, 1 failed, 1 day(s) rewritten by the re-check")
