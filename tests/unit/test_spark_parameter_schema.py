"""The parameter schema of spark-sensor-extraction: what the Prefect server checks before a
deployment run exists and what the UI form shows (no server started here: the same
schema and the same validator the server uses)."""

import pytest
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools.validation import ValidationError, validate

from flows.spark_extraction import spark_sensor_extraction
from shopfloor.historian.plan import MASTER_PATTERN, OUTPUT_PREFIX_PATTERN, TABLE_PATTERN_CHARS

SCHEMA = parameter_schema(spark_sensor_extraction.fn).model_dump_for_openapi()


def _prop(name: str) -> dict:
    return SCHEMA["properties"][name]


def test_the_limits_are_in_the_schema():
    assert _prop("num_partitions")["minimum"] == 1
    assert _prop("max_records_per_file")["anyOf"] == [{"minimum": 1, "type": "integer"},
                                                       {"type": "null"}]
    assert _prop("layout")["enum"] == ["date", "tag"] and _prop("layout")["default"] == "date"
    assert (_prop("target_file_mb")["minimum"], _prop("target_file_mb")["maximum"]) == (1, 4096)
    assert _prop("output_prefix")["pattern"] == OUTPUT_PREFIX_PATTERN
    assert _prop("spark_master")["pattern"] == MASTER_PATTERN
    assert _prop("table_pattern")["pattern"] == TABLE_PATTERN_CHARS
    assert _prop("tag_patterns")["minItems"] == 1
    assert _prop("tag_patterns")["items"] == {"type": "string", "minLength": 1,
                                               "maxLength": 255}
    assert _prop("good_quality")["minItems"] == 1


def test_the_defaults_pass_the_servers_check():
    validate({}, SCHEMA, raise_on_error=True)


@pytest.mark.parametrize(("params", "field"), [
    ({"num_partitions": 0}, "num_partitions"),
    ({"max_records_per_file": 0}, "max_records_per_file"),
    ({"layout": "tags"}, "layout"),
    ({"target_file_mb": 0}, "target_file_mb"),
    ({"output_prefix": "../outside"}, "output_prefix"),
    ({"output_prefix": "a=b"}, "output_prefix"),
    ({"spark_master": "mesos://x:5050"}, "spark_master"),
    ({"table_pattern": "sqlt_{yyyy}; DROP TABLE x"}, "table_pattern"),
    ({"tag_patterns": []}, "tag_patterns"),
    ({"tag_patterns": [""]}, "tag_patterns"),
    ({"good_quality": []}, "good_quality"),
    ({"start": "not-a-date"}, "start"),
])
def test_the_server_refuses_a_bad_value_before_a_run_exists(params, field):
    with pytest.raises(ValidationError, match=field):
        validate(params, SCHEMA, raise_on_error=True)
