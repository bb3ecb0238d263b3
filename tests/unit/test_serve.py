"""`shopfloor serve` builds its deployments from the same prefect.yaml as `shopfloor deploy`."""

from pathlib import Path

from deployments.deploy import load_config
from deployments.serve import runner_deployments

ROOT = Path(__file__).resolve().parents[2]


def test_every_prefect_yaml_deployment_is_served_with_its_schedule_and_limits():
    config = load_config(ROOT)
    served = {(d.flow_name, d.name): d for d in runner_deployments(config, ROOT)}
    assert len(served) == len(config["deployments"])
    hourly = served[("hourly-aggregation", "hourly")]
    assert [(s.schedule.cron, s.schedule.timezone) for s in hourly.schedules] == [
        ("5 * * * *", "UTC")]
    assert hourly.concurrency_limit == 1
    assert hourly.concurrency_options.collision_strategy == "ENQUEUE"
    assert hourly.enforce_parameter_schema is True
    capture = served[("modbus-capture", "every-hour")]
    assert capture.parameters["devices"] == ["line1-plc"]
    assert served[("hourly-backfill", "on-demand")].schedules in (None, [])


def test_serving_only_some_flows():
    config = load_config(ROOT)
    only = runner_deployments(config, ROOT, only=["s3-compaction", "register-s3-keys"])
    assert sorted(d.flow_name for d in only) == ["register-s3-keys", "register-s3-keys",
                                                 "s3-compaction"]
