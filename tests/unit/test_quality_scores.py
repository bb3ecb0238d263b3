"""Quality scores from batch counts, and the quality_score row."""

from datetime import UTC, datetime, timedelta

import pytest

from shopfloor.quality import (
    BatchCounts,
    Subject,
    artifact_scores,
    combined,
    completeness,
    quality_row,
    score_counts,
    timely_count,
    worst,
)


def test_four_dimensions_from_counts():
    s = score_counts(BatchCounts(rows_in=8, rows_valid=6, rows_quarantined=2,
                                 rows_duplicate=1, expected=10, rows_timely=4))
    assert (s.completeness, s.validity, s.uniqueness, s.timeliness) == (0.8, 0.75, 0.875, 0.5)
    assert s.overall == pytest.approx((0.8 + 0.75 + 0.875 + 0.5) / 4)


def test_unmeasured_dimensions_and_empty_batches_score_one():
    s = score_counts(BatchCounts(rows_in=4, rows_valid=4))
    assert (s.completeness, s.timeliness, s.overall) == (1.0, 1.0, 1.0)
    empty = score_counts(BatchCounts())
    assert (empty.validity, empty.uniqueness, empty.overall) == (1.0, 1.0, 1.0)
    # an empty object that should have held a record is not complete
    assert score_counts(BatchCounts(expected=1)).completeness == 0.0


def test_completeness_caps_at_one():
    assert completeness(12, 10) == 1.0 and completeness(5, 10) == 0.5
    assert completeness(3, None) == 1.0 and completeness(0, 0) == 1.0


def test_counts_add_up_over_batches():
    a = BatchCounts(3, 2, 1, 0, None, 3)
    b = BatchCounts(5, 5, 0, 1, None, 4)
    assert a + b == BatchCounts(8, 7, 1, 1, None, 7)
    assert (a + BatchCounts()).rows_timely == 3
    assert (BatchCounts() + BatchCounts()).rows_timely is None


def test_timely_count_against_the_bound():
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    times = [now - timedelta(minutes=m) for m in (0, 4, 5, 6, 60)]
    assert timely_count(now, times, timedelta(minutes=5)) == 3


def test_quality_row_carries_scores_counts_and_a_bounded_subject():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    row = quality_row(Subject("s3-compaction", "k/" * 200), BatchCounts(4, 3, 1), "r1", now)
    assert len(row["subject"]) == 255 and row["subject"].endswith("k/")
    assert (row["validity"], row["rows_in"], row["rows_quarantined"]) == (0.75, 4, 1)
    assert row["overall"] == pytest.approx(3.75 / 4)
    assert (row["run_id"], row["recorded_at"], row["rule_version"]) == ("r1", now, "2026.12.1")


def test_artifact_scores_worst_and_combined():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    good = quality_row(Subject("f", "a"), BatchCounts(4, 4), None, now)
    bad = quality_row(Subject("f", "b"), BatchCounts(4, 2, 2), None, now)
    assert worst([good, bad]) is bad and worst([]) is None
    assert artifact_scores(bad)["q_validity"] == 0.5
    assert artifact_scores(None) == {f"q_{c}": None for c in
                                     ("completeness", "validity", "uniqueness", "timeliness",
                                      "overall")}
    assert combined([good, bad])["validity"] == 0.75 and combined([]) is None


def test_a_spark_month_is_complete_when_every_source_row_was_written():
    from shopfloor.historian.plan import MonthSlice
    from shopfloor.spark.extract import MonthResult, apply_quality, month_quality_row

    month = MonthSlice("sqlt_data_1_2026_01", "2026-01", 1767225600000, 1769904000000)
    short = MonthResult("2026-01", month.table, "ok", source_rows=10, written_rows=8)
    row = month_quality_row(short, month, "r")
    assert (row["completeness"], row["validity"], row["expected"]) == (0.8, 1.0, 10)
    assert row["window_start"] == datetime(2026, 1, 1, tzinfo=UTC)
    apply_quality(short, row)
    assert short.q_completeness == 0.8 and short.q_overall == 0.95
