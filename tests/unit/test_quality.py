import json
import math
from datetime import UTC, datetime, timedelta

import pandas as pd
import pandera.pandas as pa
import pytest

from shopfloor.quality import quality_score, quarantine_records, split_valid

SCHEMA = pa.DataFrameSchema(
    {
        "loc_id": pa.Column(str, nullable=False),
        "temperature": pa.Column(
            float,
            checks=[pa.Check(lambda s: s.map(math.isfinite), element_wise=False,
                             name="finite"),
                    pa.Check.in_range(-40, 125)],
            nullable=False,
        ),
    },
    coerce=True,
)


def frame(rows):
    return pd.DataFrame(rows, columns=["loc_id", "temperature"])


def test_good_rows_pass_and_bad_rows_carry_every_reason():
    df = frame([("A", 21.5), ("B", float("nan")), ("C", 300.0), ("D", 22.0)])
    result = split_valid(df, SCHEMA)
    assert list(result.valid["loc_id"]) == ["A", "D"]
    bad = {q.record["loc_id"]: q for q in result.quarantined}
    assert set(bad) == {"B", "C"}
    assert {r.check for r in bad["C"].reasons} == {"in_range(-40, 125)"}
    assert all(r.column == "temperature" for r in bad["C"].reasons)
    assert bad["C"].reasons[0].value == 300.0
    assert any("finite" in r.check or "not_nullable" in r.check for r in bad["B"].reasons)


def test_missing_column_quarantines_the_whole_batch_with_the_reason():
    df = pd.DataFrame({"loc_id": ["A", "B"]})
    result = split_valid(df, SCHEMA)
    assert result.valid.empty
    assert len(result.quarantined) == 2
    assert any("column_in_dataframe" in r.check for r in result.quarantined[0].reasons)


def test_empty_batch_is_valid_and_empty():
    result = split_valid(frame([]), SCHEMA)
    assert result.valid.empty and result.quarantined == []


def test_quarantine_records_are_json_with_nan_spelled_out():
    df = frame([("B", float("nan"))])
    rows = quarantine_records(split_valid(df, SCHEMA).quarantined, "modbus", "run-1")
    assert rows[0]["source"] == "modbus" and rows[0]["run_id"] == "run-1"
    record = json.loads(rows[0]["record"])
    assert record == {"loc_id": "B", "temperature": "nan"}
    reasons = json.loads(rows[0]["reasons"])
    assert reasons and all({"column", "check", "value"} <= set(r) for r in reasons)


def test_quality_score_per_dimension():
    now = datetime(2026, 11, 21, 12, tzinfo=UTC)
    df = pd.DataFrame({
        "loc_id": ["A", "A", "B", None],
        "temperature": [20.0, 20.0, 500.0, 21.0],
        "ts": [now, now, now - timedelta(hours=2), now],
    })
    result = split_valid(df, SCHEMA)
    score = quality_score(df, result, required_columns=["loc_id", "temperature"],
                          key_columns=["loc_id", "ts"], timestamp_column="ts",
                          max_age=timedelta(hours=1), now=now)
    assert score.rows == 4
    assert score.completeness == pytest.approx(3 / 4)   # one null loc_id
    assert score.validity == pytest.approx(2 / 4)       # 500.0 and the null loc_id fail
    assert score.uniqueness == pytest.approx(3 / 4)     # ("A", now) twice
    assert score.timeliness == pytest.approx(3 / 4)     # one reading two hours old
    assert score.overall == pytest.approx((0.75 + 0.5 + 0.75 + 0.75) / 4)
