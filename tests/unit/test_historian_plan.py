"""Month planning and parameter checks of the Spark extraction (pure functions)."""

import re
from datetime import date

import pytest
from pydantic import TypeAdapter, ValidationError

from shopfloor.errors import ShopfloorError
from shopfloor.historian.plan import (
    MASTER_PATTERN,
    OUTPUT_PREFIX_PATTERN,
    TABLE_PATTERN_CHARS,
    OutputPrefix,
    PositiveInt,
    QualityCodes,
    SparkMaster,
    TablePattern,
    TagPatterns,
    check_parameters,
    check_spark_conf,
    check_table_pattern,
    epoch_ms,
    plan_months,
)

PATTERN = "sqlt_data_1_{yyyy}_{mm}"


def test_a_window_across_a_month_boundary_gives_one_slice_per_month():
    months = plan_months(date(2026, 1, 30), date(2026, 2, 2), PATTERN)
    assert [(m.table, m.month) for m in months] == [
        ("sqlt_data_1_2026_01", "2026-01"), ("sqlt_data_1_2026_02", "2026-02")]
    assert months[0].start_ms == epoch_ms(date(2026, 1, 30))
    assert months[0].end_ms == months[1].start_ms == epoch_ms(date(2026, 2, 1))
    # the end date is included: the window stops at 2026-02-03 00:00 UTC
    assert months[1].end_ms == epoch_ms(date(2026, 2, 3))
    assert months[0].dates == ["2026-01-30", "2026-01-31"]
    assert months[1].dates == ["2026-02-01", "2026-02-02"]


def test_start_equal_to_end_is_one_day():
    (only,) = plan_months(date(2026, 3, 5), date(2026, 3, 5), PATTERN)
    assert only.dates == ["2026-03-05"]
    assert only.end_ms - only.start_ms == 86_400_000


def test_year_rollover_and_a_pattern_without_placeholders():
    months = plan_months(date(2025, 12, 31), date(2026, 1, 1), PATTERN)
    assert [m.table for m in months] == ["sqlt_data_1_2025_12", "sqlt_data_1_2026_01"]
    assert [m.table for m in plan_months(date(2025, 12, 31), date(2026, 1, 1), "hist_all")] == [
        "hist_all", "hist_all"]


def test_end_before_start_is_rejected():
    with pytest.raises(ShopfloorError, match="before start"):
        plan_months(date(2026, 2, 1), date(2026, 1, 31), PATTERN)


@pytest.mark.parametrize("pattern", [
    "sqlt_data_1_{yyyy}_{mm}; DROP TABLE sqlth_te",
    "sqlt_data_1_{yyyy}_{mm} --",
    "sqlt_data_1_{yyyy}_{mm}\" OR 1=1",
    "public.sqlt_data_1_{yyyy}_{mm}",
    "{yyyy}_{mm}",  # would start with a digit
    "sqlt_{dd}",
    "sqlt_{yyyy!r}",
    "sqlt_{yyyy:>8}",
    "sqlt_{",
    "x" * 70,
    "",
])
def test_table_patterns_that_could_inject_sql_or_are_not_identifiers_are_rejected(pattern):
    with pytest.raises(ShopfloorError, match="table"):
        check_table_pattern(pattern)


def _accepts(type_, value) -> bool:
    """Whether the flow's parameter type takes ``value``, in Python and in the JSON schema
    the server checks (the same pattern both ways)."""
    try:
        TypeAdapter(type_).validate_python(value)
        return True
    except ValidationError as exc:
        assert len(str(exc.errors()[0]["msg"]).splitlines()) == 1  # a readable one-liner
        return False


@pytest.mark.parametrize("prefix", ["sensor_data", "lake/sensor-data.v2", ".hidden", "a..b"])
def test_good_output_prefixes(prefix):
    assert _accepts(OutputPrefix, prefix)
    assert re.search(OUTPUT_PREFIX_PATTERN, prefix)


@pytest.mark.parametrize("prefix", ["", "/abs", "a/", "../x", "a/../b", "a//b", "a b", "a=b",
                                    "..", ".", "a/./b", "..."])
def test_output_prefixes_that_escape_or_break_the_layout_are_rejected(prefix):
    assert not _accepts(OutputPrefix, prefix)
    assert not re.search(OUTPUT_PREFIX_PATTERN, prefix)


def test_a_refused_prefix_says_why_without_the_regular_expression():
    with pytest.raises(ValidationError) as err:
        TypeAdapter(OutputPrefix).validate_python("../outside")
    message = err.value.errors()[0]["msg"]
    assert message.startswith("'../outside' is not a folder inside the lake")
    assert OUTPUT_PREFIX_PATTERN not in message


@pytest.mark.parametrize("master", ["local", "local[2]", "local[*]", "local[4,2]",
                                    "spark://host-1.example:7077", "spark://a:7077,b:7077",
                                    "yarn", "k8s://https://k8s.example:6443"])
def test_spark_masters_accepted(master):
    assert _accepts(SparkMaster, master)
    assert re.search(MASTER_PATTERN, master)


@pytest.mark.parametrize("master", ["", "local[x]", "spark://host", "mesos://x:5050",
                                    "local[*]; rm -rf /"])
def test_spark_masters_rejected(master):
    assert not _accepts(SparkMaster, master)
    assert not re.search(MASTER_PATTERN, master)


def test_table_pattern_type_allows_identifier_characters_and_braces_only():
    assert _accepts(TablePattern, PATTERN)
    for bad in ("sqlt_{yyyy}; DROP TABLE x", "public.sqlt_{yyyy}", "sqlt_{yyyy!r}", ""):
        assert not _accepts(TablePattern, bad)
        assert not re.search(TABLE_PATTERN_CHARS, bad)
    # braces in the message are text, not placeholders
    with pytest.raises(ValidationError, match=r"\{yyyy\} and \{mm\}"):
        TypeAdapter(TablePattern).validate_python("a b")


@pytest.mark.parametrize("patterns", [[], [""], ["x" * 256], [None]])
def test_bad_tag_pattern_lists_are_rejected(patterns):
    assert not _accepts(TagPatterns, patterns)


@pytest.mark.parametrize(("type_", "value"), [
    (QualityCodes, []), (QualityCodes, [True]), (QualityCodes, ["192"]),
    (PositiveInt, 0), (PositiveInt, -1), (PositiveInt, True), (PositiveInt, "8"),
])
def test_counts_and_codes_are_whole_numbers(type_, value):
    assert not _accepts(type_, value)


def test_spark_conf_keys_must_be_spark_settings():
    assert check_spark_conf({"spark.jars": "/x.jar"}) == {"spark.jars": "/x.jar"}
    with pytest.raises(ShopfloorError, match="sprak.jars"):
        check_spark_conf({"sprak.jars": "/x.jar"})


def test_check_parameters_plans_the_months():
    months = check_parameters(date(2026, 1, 1), date(2026, 3, 31), table_pattern=PATTERN,
                              spark_conf={"spark.executor.memory": "2g"})
    assert [m.month for m in months] == ["2026-01", "2026-02", "2026-03"]


@pytest.mark.parametrize(("start", "over", "message"), [
    (date(2026, 1, 3), {}, "before start"),
    (date(2026, 1, 1), {"table_pattern": "sqlt_{dd}"}, "table_pattern"),
    (date(2026, 1, 1), {"spark_conf": {"executor.memory": "2g"}}, "spark_conf"),
])
def test_check_parameters_rejects_what_the_types_cannot_say(start, over, message):
    params = {"table_pattern": PATTERN, "spark_conf": {}} | over
    with pytest.raises(ShopfloorError, match=message):
        check_parameters(start, date(2026, 1, 2), **params)


def test_day_ranges_cover_the_slice_cut_at_midnights():
    (jan,) = plan_months(date(2026, 1, 1), date(2026, 1, 31), PATTERN)
    ranges = jan.day_ranges(8)
    assert len(ranges) == 8
    assert ranges[0][0] == jan.start_ms and ranges[-1][1] == jan.end_ms
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert all((lo - jan.start_ms) % 86_400_000 == 0 for lo, _ in ranges)
    (one_day,) = plan_months(date(2026, 1, 5), date(2026, 1, 5), PATTERN)
    assert one_day.day_ranges(8) == [(one_day.start_ms, one_day.end_ms)]


def test_no_window_means_yesterday_for_the_daily_schedule():
    from datetime import date

    from shopfloor.historian.plan import resolve_window

    assert resolve_window(None, None, date(2026, 3, 1)) == (date(2026, 2, 28), date(2026, 2, 28))
    assert resolve_window(date(2026, 1, 1), date(2026, 1, 31), date(2026, 3, 1)) == (
        date(2026, 1, 1), date(2026, 1, 31))


def test_half_a_window_is_rejected():
    from datetime import date

    import pytest

    from shopfloor.errors import ShopfloorError
    from shopfloor.historian.plan import resolve_window

    with pytest.raises(ShopfloorError, match="both start and end"):
        resolve_window(date(2026, 1, 1), None, date(2026, 3, 1))
