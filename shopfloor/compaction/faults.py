"""Fault injection: pause a run at a chosen step, so it can be killed there.

Used by compaction and by the Spark extraction's replace (which reaches ``after_stage``,
staged and checked, and ``mid_publish``, the first file moved). A documented
operator/test setting, off unless set (docs/s3_compaction.md, docs/spark_extraction.md):

- ``SHOPFLOOR_FAULT_PAUSE_AT``: the step to pause at, one of :data:`PAUSE_POINTS`.
- ``SHOPFLOOR_FAULT_PAUSE_FILE`` (optional): a file written with the step's name when
  the run gets there, so whoever waits for the pause knows it was reached.
- ``SHOPFLOOR_FAULT_RESUME_FILE`` (optional): the pause ends as soon as this file exists,
  so a test can let a paused run go on (e.g. after its claim was taken over).
- ``SHOPFLOOR_FAULT_KILL_AT``: ``<step>`` or ``<step>:<n>``: the process sends itself
  ``SIGKILL`` (what ``kill -9`` sends) the n-th time it reaches the step (default the
  first): the crash-schedule harness (tests/crash) kills runs exactly at phase boundaries.

The run then sleeps for :data:`PAUSE_SECONDS` (or until the resume file appears); the
crash tests ``kill -9`` it there to prove a crash at any step leaves every record in the
output exactly once, the fencing test resumes it to prove it then publishes nothing. Unset (the
normal case), :func:`pause_hook_from_env` returns ``None`` and the flow wires in nothing.
"""

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

from shopfloor.errors import UserError

PAUSE_AT = "SHOPFLOOR_FAULT_PAUSE_AT"
PAUSE_FILE = "SHOPFLOOR_FAULT_PAUSE_FILE"
RESUME_FILE = "SHOPFLOOR_FAULT_RESUME_FILE"
KILL_AT = "SHOPFLOOR_FAULT_KILL_AT"
PAUSE_SECONDS = 600
RESUME_POLL_SECONDS = 0.2
# In the order a run reaches them: started (nothing done yet), keys claimed, staged, first
# file moved, all moved, keys not yet marked, keys marked but the manifest not yet dropped.
# Reprocess: rows replaced (committed) but no object rewritten, the first one rewritten.
# Store and forward: a part written to its sink, the buffer's cursor not yet moved.
# Tag lake export: published, its watermark not yet moved.
PAUSE_POINTS = ("started", "after_claim", "after_stage", "mid_publish", "after_publish",
                "after_compact", "after_record", "after_commit", "mid_rewrite",
                "after_forward", "before_watermark")
_reached: Counter[str] = Counter()  # per process: how often each step was reached


def _kill_hook(spec: str) -> Callable[[str], None]:
    point, _, nth = spec.partition(":")
    if point not in PAUSE_POINTS or not (nth or "1").isdigit() or int(nth or "1") < 1:
        raise UserError(
            f"invalid {KILL_AT} {spec!r}: use <step>[:<n>], step one of "
            f"{', '.join(PAUSE_POINTS)}")
    times = int(nth or "1")

    def kill(name: str) -> None:
        if name != point:
            return
        _reached[name] += 1
        if _reached[name] == times:
            os.kill(os.getpid(), signal.SIGKILL)

    return kill


def pause_hook_from_env(environ: Mapping[str, str] = os.environ
                        ) -> Callable[[str], None] | None:
    """A hook that kills the process at the step ``SHOPFLOOR_FAULT_KILL_AT`` names, or
    pauses at the one ``SHOPFLOOR_FAULT_PAUSE_AT`` names, or ``None`` when both are unset.
    An unknown step name is refused rather than silently ignored."""
    if environ.get(KILL_AT):
        return _kill_hook(environ[KILL_AT])
    point = environ.get(PAUSE_AT)
    if not point:
        return None
    if point not in PAUSE_POINTS:
        raise UserError(
            f"invalid {PAUSE_AT} {point!r}: use one of {', '.join(PAUSE_POINTS)}")
    marker = environ.get(PAUSE_FILE)
    resume = environ.get(RESUME_FILE)

    def pause(name: str) -> None:
        if name != point:
            return
        if marker:
            Path(marker).write_text(name)
        if not resume:
            time.sleep(PAUSE_SECONDS)
            return
        for _ in range(int(PAUSE_SECONDS / RESUME_POLL_SECONDS)):
            if Path(resume).exists():
                return
            time.sleep(RESUME_POLL_SECONDS)

    return pause
