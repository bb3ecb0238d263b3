"""The Docker tests skip, with the reason, where no engine or no image is there."""

import pytest

from tests.docker.dockerlib import engine_skip_reason


@pytest.fixture(scope="module", autouse=True)
def engine_and_image() -> None:
    reason = engine_skip_reason()
    if reason:
        pytest.skip(reason)
