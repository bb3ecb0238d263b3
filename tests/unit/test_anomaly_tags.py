"""The detectors on tags: one series per tag from its hourly rows, settings per tag or
unit, findings stored under the tag's location with measure ``tag:<id>``."""

from datetime import timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from shopfloor.aggregation.hours import hour_start, index_of_ymd_hh
from shopfloor.anomaly.findings import DetectorParams
from shopfloor.anomaly.tag_series import detect_tags, rows_in_window
from shopfloor.anomaly.tag_settings import check_settings, params_for
from shopfloor.errors import UserError

UTC_ZONE = ZoneInfo("UTC")
FIRST = index_of_ymd_hh("20240101", "00")
DAYS = 40
WINDOW = FIRST + 35 * 24
LAST = FIRST + DAYS * 24 - 1


def _cycle(n: int, level: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h = np.arange(n)
    return level + 3 * np.sin(2 * np.pi * h / 24) + rng.normal(0, 0.02, n)


def tag_rows(tags: dict[int, tuple[str, str, str | None, np.ndarray]]) -> pd.DataFrame:
    """``tag_hourly`` rows as read_tag_hourly returns them: id -> (name, device, unit,
    values per hour from FIRST; NaN: no good number, None-hours are dropped)."""
    start = hour_start(FIRST, UTC_ZONE)
    rows = []
    for tag_id, (name, device, unit, values) in tags.items():
        for h, v in enumerate(values):
            rows.append({"tag_id": tag_id, "period_start": start + timedelta(hours=h),
                         "value_avg": v, "sample_count": 3600, "name": name,
                         "device": device, "location": "L001", "unit": unit})
    return pd.DataFrame(rows)


def test_a_spike_on_a_pressure_tag_is_found_and_stored_under_the_tag() -> None:
    pressure = _cycle(DAYS * 24, 6.0, 1)
    pressure[37 * 24 + 5] += 4.0
    rows = tag_rows({7: ("line_pressure", "plc1", "bar", pressure),
                     8: ("motor_current", "plc1", "A", _cycle(DAYS * 24, 12.0, 2))})
    found = detect_tags(rows, UTC_ZONE, "UTC", FIRST, WINDOW, LAST, DetectorParams(), {})
    assert {(f.kind, f.loc_id, f.measure) for f in found} == {
        ("deviation", "L001", "tag:7"), ("spike", "L001", "tag:7")}
    spike = next(f for f in found if f.kind == "spike")
    assert spike.detail["tag"] == "line_pressure" and spike.detail["unit"] == "bar"
    assert spike.hour_start == hour_start(FIRST + 37 * 24 + 5, UTC_ZONE)
    assert rows_in_window(rows, UTC_ZONE, WINDOW, LAST) == 2 * 5 * 24


def test_settings_per_unit_and_per_tag_change_what_is_found() -> None:
    pressure = _cycle(DAYS * 24, 6.0, 1)
    pressure[37 * 24 + 5] += 4.0
    rows = tag_rows({7: ("line_pressure", "plc1", "bar", pressure)})
    quiet = {"unit:bar": {"spike_threshold": 1000, "deviation_threshold": 1000}}
    assert detect_tags(rows, UTC_ZONE, "UTC", FIRST, WINDOW, LAST, DetectorParams(),
                       quiet) == []
    # The tag's own key is more specific than its unit's.
    loud = {**quiet, "plc1/line_pressure": {"spike_threshold": 5}}
    found = detect_tags(rows, UTC_ZONE, "UTC", FIRST, WINDOW, LAST, DetectorParams(), loud)
    assert [f.kind for f in found] == ["spike"]


def test_a_tag_that_goes_silent_is_a_gap_and_text_tags_are_not_judged() -> None:
    current = _cycle(DAYS * 24, 12.0, 2)
    silent = _cycle(DAYS * 24, 6.0, 1)
    rows = tag_rows({1: ("motor_current", "plc1", "A", current),
                     2: ("line_pressure", "plc1", "bar", silent),
                     3: ("recipe", "plc1", None, np.full(DAYS * 24, np.nan))})
    at = FIRST + 36 * 24
    rows = rows[~((rows["tag_id"] == 2)
                  & (rows["period_start"] >= hour_start(at, UTC_ZONE))
                  & (rows["period_start"] < hour_start(at + 3, UTC_ZONE)))]
    found = detect_tags(rows, UTC_ZONE, "UTC", FIRST, WINDOW, LAST, DetectorParams(), {})
    assert [(f.kind, f.measure, f.hours, f.detail["reason"]) for f in found] == [
        ("gap", "tag:2", 3, "no row")]


def test_params_for_takes_the_most_specific_key() -> None:
    base = DetectorParams()
    settings = {"unit:bar": {"mad_floor": 0.5, "min_samples": 10},
                "line_pressure": {"mad_floor": 0.2}, "plc2/line_pressure": {"mad_floor": 0.1}}
    assert params_for(settings, base, "plc1", "line_pressure", "bar").mad_floor == 0.2
    assert params_for(settings, base, "plc2", "line_pressure", "bar").mad_floor == 0.1
    assert params_for(settings, base, "plc1", "flow", "bar").mad_floor == 0.5
    assert params_for(settings, base, "plc1", "flow", "bar").min_samples == 10
    assert params_for(settings, base, "plc1", "flow", "m3/h") == base


@pytest.mark.parametrize(("settings", "message"), [
    ({"unit:bar": {"history_days": 3}}, "unknown setting(s) ['history_days']"),
    ({"line_pressure": {"flatline_hours": 1}}, "flatline_hours must be at least 2"),
    ({"unit:": {"mad_floor": 1}}, "needs a tag name"),
    ({"x": {"mad_floor": "a lot"}}, "tag_settings['x']"),
])
def test_bad_settings_are_refused_with_their_key(settings, message) -> None:
    with pytest.raises(UserError) as err:
        check_settings(settings, DetectorParams())
    assert message in str(err.value)
