"""The Docker worker supervisor reading the worker's messages (deployments/docker_worker.py)."""

from deployments.docker_worker import SUBMIT_FAILED, missing_image


def test_a_failed_pull_names_the_image() -> None:
    message = ("Failed to submit flow run to infrastructure: APIError: 500 Server Error for "
               "http+docker://localhost/v1.41/images/create?tag=no-such-tag&fromImage=shopfloor:"
               ' Internal Server Error ("Get "https://registry-1.docker.io/v2/": dial tcp: '
               'lookup registry-1.docker.io: no such host")')
    assert missing_image(message) == "shopfloor:no-such-tag"


def test_a_never_pulled_image_is_named() -> None:
    message = ("Failed to submit flow run to infrastructure: ImageNotFound: 404 Client Error "
               'for http+docker://localhost/v1.41/containers/create: Not Found ("No such '
               'image: shopfloor:old")')
    assert missing_image(message) == "shopfloor:old"


def test_other_failures_are_left_alone() -> None:
    assert missing_image("Flow run infrastructure exited with non-zero status code 1.") is None


def test_the_worker_log_line_gives_the_run_name() -> None:
    line = ("00:09:11.429 | ERROR   | prefect.flow_runs.worker - Failed to submit flow run "
            "'amaranth-ibis' to infrastructure.")
    assert SUBMIT_FAILED.search(line).group(1) == "amaranth-ibis"
