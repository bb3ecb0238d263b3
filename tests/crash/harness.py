"""The crash-schedule harness: kill -9 a publishing flow at seeded moments, several times
in a row (runs that take over included), let it recover, check the invariant.

A *schedule* is a list of kills drawn from a seed: each kill ends one run, either at a
phase boundary (the run sends itself SIGKILL when it reaches the step, through
``SHOPFLOOR_FAULT_KILL_AT``) or at a random instant (the test sends SIGKILL after a
random delay; a run that finished first simply finished). Every run after the first
takes over what the killed ones held (claim TTL 0). After each kill a reader checks what
readers may see (never a partial or doubled state); after the kills, runs without
faults recover until nothing is left, and the case checks the final invariant (every
valid record exactly once, nothing left in staging).

A failing schedule names its seed; ``SHOPFLOOR_CRASH_SEEDS=<seed>`` replays it.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Kill:
    """One kill: at the ``nth`` time a run reaches ``point``, or ``delay`` seconds in."""

    point: str | None = None
    nth: int = 1
    delay: float | None = None

    def __str__(self) -> str:
        return (f"{self.point}:{self.nth}" if self.point else f"+{self.delay:.2f}s")


@dataclass(frozen=True)
class Schedule:
    seed: int
    kills: tuple[Kill, ...]

    def __str__(self) -> str:
        return f"seed {self.seed}: " + " -> ".join(map(str, self.kills))


def draw_schedule(seed: int, points: Sequence[str], max_nth: int = 1,
                  max_delay: float = 3.0, max_kills: int = 3) -> Schedule:
    """1 to ``max_kills`` kills; about two in three at a phase boundary, the rest at a
    random instant within ``max_delay`` seconds of the run's start."""
    rng = random.Random(seed)
    kills = []
    for _ in range(rng.randint(1, max_kills)):
        if rng.random() < 0.67:
            kills.append(Kill(rng.choice(list(points)), rng.randint(1, max_nth)))
        else:
            kills.append(Kill(delay=round(rng.uniform(0.0, max_delay), 2)))
    return Schedule(seed, tuple(kills))


def seeds(default_count: int, salt: int) -> list[int]:
    """The seeds of a test: ``SHOPFLOOR_CRASH_SEEDS`` (comma-separated) replays given
    ones; else ``SHOPFLOOR_CRASH_SCHEDULES`` (or ``default_count``) seeds from ``salt``."""
    given = os.environ.get("SHOPFLOOR_CRASH_SEEDS")
    if given:
        return [int(s) for s in given.split(",") if s.strip()]
    count = int(os.environ.get("SHOPFLOOR_CRASH_SCHEDULES", default_count))
    return [salt * 100_000 + i for i in range(count)]


@dataclass
class Outcome:
    """How one run ended: exit status, or the signal that ended it."""

    status: int | None
    signal: int | None
    timed_out: bool = False

    @property
    def killed(self) -> bool:
        return self.signal == signal.SIGKILL


class Zygote:
    """The forking runner (tests/crash/zygote.py) seen from the test."""

    def __init__(self, modules: Sequence[str], env: dict[str, str], log: Path) -> None:
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-u", str(Path(__file__).with_name("zygote.py")), *modules],
            cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._log, text=True)
        ready = self._read()
        assert ready == {"ready": True}, ready
        self.log = log

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"zygote ended: see {self.log_tail()}")
        return json.loads(line)

    def log_tail(self, n: int = 3000) -> str:
        self._log.flush()
        return self._log.name and Path(self._log.name).read_text(errors="replace")[-n:]

    def _ask(self, req: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def run(self, target: str, kwargs: dict[str, Any], kill: Kill | None = None,
            env: dict[str, str] | None = None) -> Outcome:
        """Run ``target(**kwargs)`` in a fresh fork, killed as ``kill`` says."""
        env = dict(env or {})
        if kill and kill.point:
            env["SHOPFLOOR_FAULT_KILL_AT"] = f"{kill.point}:{kill.nth}"
        pid = self._ask({"op": "run", "target": target, "kwargs": kwargs, "env": env})["pid"]
        if kill and kill.delay is not None:
            time.sleep(kill.delay)
            os.kill(pid, signal.SIGKILL)  # a zombie (already ended) ignores it
        reply = self._ask({"op": "wait", "pid": pid, "timeout": RUN_TIMEOUT_S})
        return Outcome(reply["status"], reply["signal"], reply["timed_out"])

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class CrashCase(Protocol):
    """One publishing flow under the harness."""

    target: str  # module:function of the flow

    def kwargs(self, taking_over: bool) -> dict[str, Any]: ...
    def check_visible(self, when: str) -> None: ...  # what a reader sees now
    def done(self) -> bool: ...  # nothing left to recover
    def check_final(self) -> None: ...


@dataclass
class Report:
    schedule: Schedule
    outcomes: list[Outcome] = field(default_factory=list)
    recovery_runs: int = 0


def run_schedule(zygote: Zygote, case: CrashCase, schedule: Schedule,
                 max_recovery_runs: int = 8,
                 between: Callable[[int], None] = lambda i: None) -> Report:
    """Play ``schedule`` against ``case``; raise AssertionError naming the seed if an
    invariant breaks."""
    report = Report(schedule)
    try:
        for i, kill in enumerate(schedule.kills):
            out = zygote.run(case.target, case.kwargs(taking_over=i > 0), kill)
            assert not out.timed_out, "a run hung"
            report.outcomes.append(out)
            case.check_visible(f"after kill {i + 1} ({kill})")
            between(i)
        while not case.done() or report.recovery_runs < getattr(case, "min_recovery_runs", 0):
            assert report.recovery_runs < max_recovery_runs, "recovery did not finish"
            out = zygote.run(case.target, case.kwargs(taking_over=True))
            assert not out.timed_out and not out.killed, f"recovery run ended {out}"
            report.recovery_runs += 1
            case.check_visible(f"after recovery run {report.recovery_runs}")
        case.check_final()
    except AssertionError as exc:
        raise AssertionError(
            f"crash schedule {schedule} broke the invariant: {exc}\n"
            f"replay: SHOPFLOOR_CRASH_SEEDS={schedule.seed} pytest tests/crash\n"
            f"runs' log: {zygote.log}") from exc
    return report
