"""One real flow run in a container: a `prefect server`, the Docker pool made from
deployments/docker-pool.json, a Docker worker (prefect-docker), the embedded demo.

Marked ``docker``: `make test` deselects it (pyproject addopts), `make docker-test` runs
it. Needs a running Docker engine and the image from `make image` (skipped, with the
reason, without them).
"""

import json
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from deployments.docker_pool import load_template
from tests.conftest import free_port
from tests.docker.dockerlib import (
    IMAGE,
    docker,
    remove_pool_containers,
    wait_no_containers,
    wait_terminal,
)
from tests.e2e.servers import BIN, ROOT, api, clean_env, prefect_server, sh, stop

pytestmark = pytest.mark.docker


def deploy_file(path: Path, pool: str, volumes: list[str]) -> None:
    """A prefect.yaml with only the demo deployment on ``pool``, the local image and this
    test's own volumes (the pool's job variables otherwise)."""
    path.write_text(yaml.safe_dump({
        "name": "shopfloor", "prefect-version": "3.8.8",
        "pull": [{"prefect.deployments.steps.set_working_directory":
                  {"directory": "/opt/shopfloor"}}],
        "deployments": [{"name": "embedded", "entrypoint": "demo_steps/flow.py:demo",
                         "work_pool": {"name": pool,
                                       "job_variables": {"image": IMAGE,
                                                         "volumes": volumes}}}],
    }, sort_keys=False))


def test_the_demo_runs_in_a_container_on_the_pool_from_the_repo(tmp_path):
    tag = uuid.uuid4().hex[:8]
    pool, volumes = f"shopfloor-docker-{tag}", [
        f"shopfloor-buffer-{tag}:/opt/shopfloor/.shopfloor/buffer",
        f"shopfloor-lake-{tag}:/opt/shopfloor/.shopfloor/lake"]
    env = clean_env()
    worker = None
    try:
        with prefect_server(tmp_path, env, free_port()):
            # The pool exactly as `make docker-pool` makes it, pointed at this server.
            template = tmp_path / "pool.json"
            template.write_text(json.dumps(load_template(env["PREFECT_API_URL"])))
            sh(env, str(BIN / "prefect"), "work-pool", "create", pool, "--type", "docker",
               "--base-job-template", str(template))
            deploy_file(tmp_path / "prefect.yaml", pool, volumes)
            sh(env, str(BIN / "prefect"), "--no-prompt", "deploy", "--all",
               "--prefect-file", str(tmp_path / "prefect.yaml"))
            log = open(tmp_path / "worker.log", "w")
            worker = subprocess.Popen(
                [str(BIN / "prefect"), "worker", "start", "--type", "docker", "--pool", pool],
                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
            dep = api(env, "GET", "/deployments/name/demo/embedded").json()
            run = api(env, "POST", f"/deployments/{dep['id']}/create_flow_run",
                      json={}).json()
            done = wait_terminal(env["PREFECT_API_URL"], run["id"], timeout=600)
            out = (tmp_path / "worker.log").read_text()
            assert done["state_type"] == "COMPLETED", out[-4000:]
            # It ran in a container of the local image, which is gone (auto_remove).
            assert "Completed" in out
            # The state is Completed before the process exits: give the engine a minute.
            assert not wait_no_containers("io.prefect.flow-run-id", run["id"], timeout=60)
            # The Parquet the demo wrote is in the lake volume, as the shopfloor user's.
            files = docker("run", "--rm", "--network", "none", "-v", volumes[1], IMAGE,
                           "find", "/opt/shopfloor/.shopfloor/lake", "-name", "*.parquet",
                           "-user", "shopfloor").stdout.split()
            assert any("/sensor_data/" in f for f in files), files
            assert any("/datalog_v2/" in f for f in files), files
    finally:
        if worker is not None:
            stop(worker, signal.SIGINT)
        # A failed test leaves no container behind (a stopped worker does not stop its
        # runs' containers), then no volume.
        remove_pool_containers(pool)
        for volume in volumes:
            docker("volume", "rm", "-f", volume.split(":")[0], check=False)
