"""The Docker tests skip, with the reason, where they are not asked for (`make test`: they
are counted as skipped in its summary, with one reason) or where no engine or no image is
there. They run under `make docker-test` / `make docker-ci` (``-m docker``)."""

import os

import pytest

from tests.docker.dockerlib import engine_skip_reason

NOT_ASKED = ("the Docker suite runs in `make docker-ci` (it installs and starts the engine), "
             "not in `make test`")


def _asked(config: pytest.Config) -> bool:
    """``-m docker`` (the Make targets) or SHOPFLOOR_DOCKER_TESTS=1."""
    expr = str(config.option.markexpr or "")
    return os.environ.get("SHOPFLOOR_DOCKER_TESTS") == "1" or (
        "docker" in expr and "not docker" not in expr)


@pytest.fixture(scope="module", autouse=True)
def engine_and_image(request: pytest.FixtureRequest) -> None:
    if not _asked(request.config):
        pytest.skip(NOT_ASKED)
    reason = engine_skip_reason()
    if reason:
        pytest.skip(reason)
