"""A pause point for crash tests: lets a test kill -9 the process at a chosen step.

Inactive unless ``SHOPFLOOR_TEST_PAUSE_AT`` names the point; then the process touches
``SHOPFLOOR_TEST_PAUSE_FILE`` (so the test knows it got there) and sleeps.
"""

import os
import time
from pathlib import Path

PAUSE_SECONDS = 600


def pause_point(name: str) -> None:
    """Pause here if the environment asks for it (tests only)."""
    if os.environ.get("SHOPFLOOR_TEST_PAUSE_AT") != name:
        return
    marker = os.environ.get("SHOPFLOOR_TEST_PAUSE_FILE")
    if marker:
        Path(marker).write_text(name)
    time.sleep(PAUSE_SECONDS)
