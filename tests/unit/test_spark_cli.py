"""``shopfloor spark extract``: option parsing and bad values before any flow run."""

import pytest
from typer.testing import CliRunner

from deployments.cli import app
from deployments.spark_cli import parse_conf
from shopfloor.errors import ShopfloorError
from shopfloor.params import check_typed


def test_conf_options_become_a_dict():
    assert parse_conf(["spark.a=1", "spark.b=x=y"]) == {"spark.a": "1", "spark.b": "x=y"}
    with pytest.raises(ShopfloorError, match="key=value"):
        parse_conf(["spark.a"])


@pytest.mark.parametrize(("args", "message"), [
    (["2026-02-01", "2026-01-01"], "before start"),
    (["2026-01-01", "2026-01-02", "--master", "mesos://x:1"], "spark_master"),
    (["2026-01-01", "2026-01-02", "--conf", "executor.memory=2g"], "spark_conf"),
    (["2026-01-01", "2026-01-02", "--num-partitions", "0"],
     "Invalid value for '--num-partitions': Input should be greater than or equal to 1"),
    (["2026-01-01", "2026-01-02", "--output-prefix", "a/../b"],
     "output_prefix: 'a/../b' is not a folder inside the lake"),
    (["2026-01-01", "2026-01-02", "--tag-pattern", ""],
     "tag_patterns.0: String should have at least 1 character"),
])
def test_bad_values_fail_before_the_flow_runs(monkeypatch, args, message):
    def no_run(*a, **k):
        raise AssertionError("blocks looked up or a flow started for bad values")

    monkeypatch.setattr("blocks.resolve.require_blocks", no_run)
    result = CliRunner().invoke(app, ["spark", "extract", *args])
    assert isinstance(result.exception, ShopfloorError)
    assert message in str(result.exception)
    assert "\n" not in str(result.exception)


def test_every_typed_problem_is_named_on_one_line():
    from flows.spark_extraction import spark_sensor_extraction

    with pytest.raises(ShopfloorError) as err:
        check_typed(spark_sensor_extraction, num_partitions=0, spark_master="x")
    assert str(err.value) == (
        "num_partitions: Input should be greater than or equal to 1, got 0; spark_master: 'x' is "
        "not a Spark master: use local[*], local[N], spark://host:7077, yarn or "
        "k8s://https://host:port")
    check_typed(spark_sensor_extraction, num_partitions=4, spark_master="local[2]")
