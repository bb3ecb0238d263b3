"""``shopfloor spark extract``: option parsing and bad values before any flow run."""

import pytest
from typer.testing import CliRunner

from deployments.cli import app
from deployments.spark_cli import parse_conf
from shopfloor.errors import ShopfloorError


def test_conf_options_become_a_dict():
    assert parse_conf(["spark.a=1", "spark.b=x=y"]) == {"spark.a": "1", "spark.b": "x=y"}
    with pytest.raises(ShopfloorError, match="key=value"):
        parse_conf(["spark.a"])


@pytest.mark.parametrize(("args", "message"), [
    (["2026-02-01", "2026-01-01"], "before start"),
    (["2026-01-01", "2026-01-02", "--master", "mesos://x:1"], "spark_master"),
    (["2026-01-01", "2026-01-02", "--conf", "executor.memory=2g"], "spark_conf"),
])
def test_bad_values_fail_before_the_flow_runs(args, message):
    result = CliRunner().invoke(app, ["spark", "extract", *args])
    assert isinstance(result.exception, ShopfloorError)
    assert message in str(result.exception)
