"""Validation of master data rows before they reach the warehouse."""

import pandas as pd

from shopfloor.aggregation.locations import COLUMNS, validate_locations


def frame(*rows):
    base = dict.fromkeys(COLUMNS)
    return pd.DataFrame([{**base, "active": True, **r} for r in rows], columns=list(COLUMNS))


def test_good_rows_pass_and_a_min_above_max_is_quarantined_with_its_reason():
    result = validate_locations(frame(
        {"loc_id": "A", "temperature_min": 10.0, "temperature_max": 30.0},
        {"loc_id": "B", "humidity_min": 80.0, "humidity_max": 20.0},
        {"loc_id": "C"},
    ))
    assert sorted(result.valid["loc_id"]) == ["A", "C"]
    (bad,) = result.quarantined
    assert bad.record["loc_id"] == "B"
    assert any(r.check == "threshold_min_not_above_max" for r in bad.reasons)


def test_a_blank_loc_id_is_quarantined():
    result = validate_locations(frame({"loc_id": "A"}, {"loc_id": "has space"}))
    assert list(result.valid["loc_id"]) == ["A"]
    assert result.quarantined[0].record["loc_id"] == "has space"
