"""Bad parameters of spark-sensor-extraction fail with a clear error before Spark starts
and before any database connection is opened."""

from datetime import date

import pytest

import flows.spark_extraction as extraction
from shopfloor.errors import ShopfloorError

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def nothing_may_open(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("opened before the parameters were checked")

    for name in ("spark_session", "load_block", "load_engine", "load_storage"):
        monkeypatch.setattr(extraction, name, forbidden)


@pytest.mark.parametrize(("params", "message"), [
    ({"start": date(2026, 2, 1), "end": date(2026, 1, 1)}, "before start"),
    ({"table_pattern": "sqlt_data_1_{yyyy}_{mm}; DROP TABLE sqlth_te"}, "table_pattern"),
    ({"table_pattern": "sqlt_{yyyy}_{mm} WHERE 1=1 --"}, "table_pattern"),
    ({"output_prefix": "../outside"}, "output_prefix"),
    ({"tag_patterns": []}, "tag_patterns"),
    ({"good_quality": []}, "good_quality"),
    ({"spark_master": "mesos://x:5050"}, "spark_master"),
    ({"spark_conf": {"jars": "/x.jar"}}, "spark_conf"),
    ({"num_partitions": 0}, "num_partitions"),
    ({"end": None}, "both start and end"),
])
def test_bad_parameters_are_rejected_before_anything_opens(nothing_may_open, params, message):
    call = {"start": date(2026, 1, 1), "end": date(2026, 1, 2)} | params
    with pytest.raises(ShopfloorError, match=message):
        extraction.spark_sensor_extraction(**call)


def test_an_unknown_block_is_a_clear_error_before_spark_starts(monkeypatch):
    monkeypatch.setattr(extraction, "spark_session", pytest.fail)
    with pytest.raises(ShopfloorError, match="no-such-historian"):
        extraction.spark_sensor_extraction(start=date(2026, 1, 1), end=date(2026, 1, 2),
                                           historian_db="no-such-historian")
