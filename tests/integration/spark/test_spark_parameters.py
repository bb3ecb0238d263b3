"""Bad parameters of spark-sensor-extraction fail with a clear error before Spark starts
and before any database connection is opened: the typed limits through Prefect's
parameter validation (``ParameterTypeError``), the rest through ``check_parameters``."""

from datetime import date

import pytest
from prefect.exceptions import ParameterTypeError

import flows.spark_extraction as extraction
from deployments.cli import load_group
from deployments.flowcli import load
from shopfloor.errors import ShopfloorError

# The command's options are read from the real flow, before a test patches it.
load(load_group("spark").commands["extract"])

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def nothing_may_open(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("opened before the parameters were checked")

    monkeypatch.setattr(extraction, "spark_session", forbidden)
    for name in ("engine", "storage"):
        monkeypatch.setattr(extraction.runtime, name, forbidden)


@pytest.mark.parametrize(("params", "message"), [
    ({"table_pattern": "sqlt_data_1_{yyyy}_{mm}; DROP TABLE sqlth_te"},
     "table_pattern: 'sqlt_data_1_{yyyy}_{mm}; DROP TABLE sqlth_te' is not a table pattern"),
    ({"table_pattern": "sqlt_{yyyy}_{mm} WHERE 1=1 --"}, "table_pattern: "),
    ({"output_prefix": "../outside"}, "output_prefix: '../outside' is not a folder"),
    ({"tag_patterns": []}, "tag_patterns: List should have at least 1 item"),
    ({"good_quality": []}, "good_quality: List should have at least 1 item"),
    ({"spark_master": "mesos://x:5050"}, "spark_master: 'mesos://x:5050' is not a Spark master"),
    ({"num_partitions": 0}, "num_partitions: Input should be greater than or equal to 1"),
    ({"max_records_per_file": -1}, "max_records_per_file: Input should be greater than"),
    ({"layout": "hour"}, "layout: Input should be 'date' or 'tag'"),
    ({"target_file_mb": 0}, "target_file_mb: Input should be greater than or equal to 1"),
])
def test_typed_limits_are_refused_by_parameter_validation(nothing_may_open, params, message):
    call = {"start": date(2026, 1, 1), "end": date(2026, 1, 2)} | params
    with pytest.raises(ParameterTypeError) as err:
        extraction.spark_sensor_extraction(**call)
    assert message in str(err.value)


@pytest.mark.parametrize(("params", "message"), [
    ({"start": date(2026, 2, 1), "end": date(2026, 1, 1)}, "end 2026-01-01 is before start"),
    ({"table_pattern": "sqlt_{yyyy}_{dd}"}, "unknown placeholder(s) ['dd']"),
    ({"spark_conf": {"jars": "/x.jar"}}, "spark_conf keys must start with 'spark.'"),
    ({"end": None}, "both start and end"),
])
def test_rules_across_fields_are_refused_by_check_parameters(nothing_may_open, params,
                                                             message):
    call = {"start": date(2026, 1, 1), "end": date(2026, 1, 2)} | params
    with pytest.raises(ShopfloorError) as err:
        extraction.spark_sensor_extraction(**call)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_unknown_block_is_a_clear_error_before_spark_starts(monkeypatch):
    monkeypatch.setattr(extraction, "spark_session", pytest.fail)
    with pytest.raises(ShopfloorError, match="no-such-historian"):
        extraction.spark_sensor_extraction(start=date(2026, 1, 1), end=date(2026, 1, 2),
                                           historian_db="no-such-historian")


def test_the_cli_refuses_an_unknown_block_in_one_line_before_a_flow_run(monkeypatch,
                                                                        lake_block):
    from typer.testing import CliRunner

    from deployments.cli import app

    class NoRun:
        fn = extraction.spark_sensor_extraction.fn  # the types are still checked

        def __call__(self, **params):
            raise AssertionError("a flow run started")

    monkeypatch.setattr(extraction, "spark_sensor_extraction", NoRun())
    lake, _ = lake_block
    result = CliRunner().invoke(app, ["spark", "extract", "2026-01-01", "2026-01-02",
                                      "--historian-db", "no-such-historian", "--lake", lake])
    assert isinstance(result.exception, ShopfloorError)
    assert "block 'no-such-historian' not found" in str(result.exception)
    assert "\n" not in str(result.exception)


@pytest.mark.timeout(300)
def test_a_month_failing_in_the_jvm_names_the_java_cause_in_one_line(historian_block,
                                                                      lake_block):
    """No PostgreSQL driver on Spark's classpath (only an unrelated jar): the CLI's one
    error line carries the Java cause, not just py4j's "error while calling o56.jdbc"."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from prefect.settings import PREFECT_API_URL

    from shopfloor.spark.jars import DEBIAN_JARS

    other = [j for j in DEBIAN_JARS if "postgresql" not in j and Path(j).is_file()]
    if not other:
        pytest.skip("no JDBC jar other than PostgreSQL's is installed")
    lake, folder = lake_block
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    env.pop("PYSPARK_PYTHON", None)
    res = subprocess.run(
        [str(Path(sys.executable).with_name("shopfloor")), "spark", "extract", "2026-01-30",
         "2026-01-30", "--historian-db", historian_block, "--lake", lake,
         "--master", "local[1]", "--conf", f"spark.jars={other[0]}"],
        capture_output=True, text=True, env=env, timeout=280)
    assert res.returncode == 1, res.stdout + res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, res.stderr
    assert "ClassNotFoundException: org.postgresql.Driver" in errors[0], errors[0]
    # (The failed task's own log above keeps its Java stack trace, for whoever debugs it.)
    assert not any(Path(folder).rglob("*.parquet"))
