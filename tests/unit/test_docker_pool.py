"""The Docker work pool's base job template (deployments/docker-pool.json)."""

import asyncio
import json

import pytest
from prefect_docker.worker import DockerWorker, DockerWorkerJobConfiguration

from deployments.deploy import load_config, plan_deploy
from deployments.docker_pool import TEMPLATE, defaults, load_template
from tests.unit.test_deploy_plan import ROOT

pytestmark = pytest.mark.unit

VOLUMES = ["shopfloor-buffer:/opt/shopfloor/.shopfloor/buffer",
           "shopfloor-lake:/opt/shopfloor/.shopfloor/lake"]


def configure(template: dict, values: dict) -> DockerWorkerJobConfiguration:
    """What the Docker worker would run a flow with, from the template and job variables.

    Prefect's own merge; the client is only asked for block and variable references, which
    the template has none of (a bare object fails loudly if that changes)."""
    return asyncio.run(DockerWorkerJobConfiguration.from_template_and_values(
        template, values, client=object()))


def test_the_defaults_never_pull_remove_containers_use_the_host_network_and_volumes():
    got = defaults(load_template())
    assert got["image"] == "shopfloor:latest"
    assert got["image_pull_policy"] == "Never"
    assert got["auto_remove"] is True
    assert got["network_mode"] == "host"
    assert got["volumes"] == VOLUMES
    assert got["env"]["PREFECT_API_URL"] == "http://127.0.0.1:4200/api"
    assert got["env"]["SPARK_LOCAL_IP"] == "127.0.0.1"


def test_the_template_fits_the_pinned_prefect_docker_worker():
    # Same job configuration and variables as prefect-docker's own default template, so
    # `prefect work-pool create --type docker --base-job-template` takes it as is.
    ours, theirs = load_template(), DockerWorker.get_default_base_job_template()
    assert ours["job_configuration"] == theirs["job_configuration"]
    assert set(ours["variables"]["properties"]) == set(theirs["variables"]["properties"])
    job = configure(ours, {})
    assert (job.image, job.image_pull_policy, job.auto_remove, job.network_mode) == (
        "shopfloor:latest", "Never", True, "host")
    assert job.volumes == VOLUMES
    assert job.env["PREFECT_API_URL"] == "http://127.0.0.1:4200/api"


def test_the_api_url_can_be_given_and_the_file_is_unchanged():
    before = TEMPLATE.read_text()
    got = defaults(load_template("http://prefect.plant:4200/api"))["env"]
    assert got["PREFECT_API_URL"] == "http://prefect.plant:4200/api"
    assert got["PREFECT_LOGGING_LEVEL"] == "INFO"
    assert TEMPLATE.read_text() == before
    assert json.loads(before)["variables"]["properties"]["env"]["default"][
        "PREFECT_API_URL"] == "http://127.0.0.1:4200/api"


def test_prefect_yaml_deployments_keep_the_pools_volumes_network_and_api_url():
    # A deployment's `volumes` replace the pool's; `env` is merged into the pool's.
    template = load_template()
    plan = plan_deploy(load_config(ROOT), "docker-no-build", None, ROOT)
    for dep in plan.config["deployments"]:
        job = configure(template, dep["work_pool"]["job_variables"])
        assert job.volumes == VOLUMES, dep["name"]
        assert job.network_mode == "host" and job.auto_remove is True
        assert job.image == "shopfloor:latest"
        assert job.image_pull_policy == "IfNotPresent"  # never pulls a present local image
        assert job.env["PREFECT_API_URL"] == "http://127.0.0.1:4200/api"
        assert job.env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"


def test_the_line_files_history_is_kept_on_a_volume_of_the_capture_deployment(monkeypatch):
    """modbus-capture compares a line file with what the last run read (docs/modbus.md,
    "Line file"); in a container that view must outlive the container, i.e. lie on one
    of the named volumes the capture deployment mounts. Under the image's SHOPFLOOR_HOME
    it used to be in the container's own layer: every run was a "first run"."""
    from shopfloor.modbus.line import state_path

    home = "/opt/shopfloor/.shopfloor"  # the Dockerfile's SHOPFLOOR_HOME
    assert f"SHOPFLOOR_HOME={home}" in (ROOT / "Dockerfile").read_text()
    monkeypatch.setenv("SHOPFLOOR_HOME", home)
    plan = plan_deploy(load_config(ROOT), "docker-no-build", None, ROOT)
    capture = next(d for d in plan.config["deployments"]
                   if d["entrypoint"].endswith(":modbus_capture"))
    job = configure(load_template(), capture["work_pool"]["job_variables"])
    mounted = [v.split(":")[1] for v in job.volumes]
    kept = state_path("/etc/shopfloor/line1.yaml")
    assert any(kept.is_relative_to(m) for m in mounted), (kept, mounted)
