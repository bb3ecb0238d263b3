"""What `shopfloor deploy` hands to `prefect deploy`, derived from the real prefect.yaml."""

from pathlib import Path

import pytest

from deployments.deploy import load_config, plan_deploy

ROOT = Path(__file__).resolve().parents[2]
FLOWS = {
    "flows/modbus_capture.py:modbus_capture", "flows/hourly_aggregation.py:hourly_aggregation",
    "flows/backfill.py:hourly_backfill", "flows/master_sync.py:master_data_sync",
    "flows/s3_compaction.py:register_s3_keys", "flows/s3_compaction.py:s3_compaction",
    "flows/spark_extraction.py:spark_sensor_extraction", "demo_steps/flow.py:demo",
    "flows/refresh_credentials.py:refresh_credentials",
    "flows/anomaly_detection.py:detect_anomalies", "flows/reprocess.py:reprocess_raw",
    "flows/lake_maintenance.py:lake_maintenance", "flows/mqtt_ingest.py:mqtt_ingest",
    "flows/tag_lake_export.py:tag_lake_export",
}


@pytest.fixture(scope="module")
def config():
    return load_config(ROOT)


def crons(config) -> dict[str, list[tuple[str, str]]]:
    return {d["entrypoint"].split(":")[1]: [(s["cron"], s["timezone"])
                                            for s in d.get("schedules") or []]
            for d in config["deployments"]}


def test_one_deployment_per_flow_on_the_docker_pool(config):
    assert {d["entrypoint"] for d in config["deployments"]} == FLOWS
    for dep in config["deployments"]:
        assert dep["work_pool"]["name"] == "shopfloor-docker"
        assert dep["work_pool"]["job_variables"]["image_pull_policy"] == "IfNotPresent"
        assert dep["enforce_parameter_schema"] is True
        assert (ROOT / dep["entrypoint"].split(":")[0]).exists()


def test_schedules_as_the_operations_guide_says(config):
    c = crons(config)
    assert c["modbus_capture"] == [("0 * * * *", "UTC")]
    assert c["hourly_aggregation"] == [("5 * * * *", "UTC")]
    assert c["detect_anomalies"] == [("15 * * * *", "UTC")]  # after the hourly rows
    assert c["s3_compaction"] == [("20 * * * *", "UTC")]
    assert c["master_data_sync"] == [("30 0 * * *", "UTC")]
    assert c["spark_sensor_extraction"] == [("0 2 * * *", "UTC")]
    assert c["refresh_credentials"] == [("40 1 * * 1", "UTC")]
    assert c["lake_maintenance"] == [("30 4 * * *", "UTC")]  # after extraction, listing
    assert c["tag_lake_export"] == [("25 * * * *", "UTC")]
    assert c["hourly_backfill"] == [] and c["demo"] == [] and c["reprocess_raw"] == []
    registration = {d["name"]: d for d in config["deployments"]
                    if d["entrypoint"].endswith(":register_s3_keys")}
    assert registration["every-15-minutes"]["schedules"][0]["cron"] == "*/15 * * * *"
    assert registration["daily-full-listing"]["parameters"] == {"full_listing": True}


def test_hourly_aggregation_never_overlaps_itself(config):
    dep = next(d for d in config["deployments"] if d["entrypoint"].endswith("hourly_aggregation"))
    assert dep["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}


def test_anomaly_detection_never_overlaps_itself(config):
    dep = next(d for d in config["deployments"] if d["entrypoint"].endswith("detect_anomalies"))
    assert dep["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    assert dep["work_pool"]["work_queue_name"] == "scheduled"


def test_lake_maintenance_runs_alone_on_the_scheduled_queue(config):
    dep = next(d for d in config["deployments"] if d["entrypoint"].endswith("lake_maintenance"))
    assert dep["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    assert dep["work_pool"]["work_queue_name"] == "scheduled"


def test_tag_lake_export_runs_alone_on_the_scheduled_queue(config):
    dep = next(d for d in config["deployments"] if d["entrypoint"].endswith("tag_lake_export"))
    assert dep["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    assert dep["work_pool"]["work_queue_name"] == "scheduled"


def test_no_secret_in_prefect_yaml():
    text = (ROOT / "prefect.yaml").read_text().lower()
    for word in ("password", "secret_access_key", "aws_secret", "postgresql://"):
        assert word not in text


def test_local_plan_drops_the_image_and_targets_a_process_pool(config):
    plan = plan_deploy(config, "local", None, Path("/srv/shopfloor"), paused=True)
    assert plan.pool == "shopfloor-process" and plan.pool_type == "process"
    assert plan.config["build"] is None and plan.config["push"] is None
    step = plan.config["pull"][0]["prefect.deployments.steps.set_working_directory"]
    assert step == {"directory": "/srv/shopfloor"}
    for dep in plan.config["deployments"]:
        assert dep["work_pool"]["name"] == "shopfloor-process"
        assert "image" not in dep["work_pool"]["job_variables"]
        assert all(s["active"] is False for s in dep.get("schedules") or [])
    assert config["build"] is not None  # the original is untouched


def test_no_build_plan_pins_the_image_and_keeps_the_docker_pool(config):
    plan = plan_deploy(config, "docker-no-build", None, ROOT, image="registry/shopfloor:1.2")
    assert plan.pool == "shopfloor-docker" and plan.config["build"] is None
    jv = plan.config["deployments"][0]["work_pool"]["job_variables"]
    assert jv["image"] == "registry/shopfloor:1.2" and jv["image_pull_policy"] == "IfNotPresent"
    assert plan_deploy(config, "docker-no-push", "other", ROOT).config["push"] is None
