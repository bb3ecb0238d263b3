"""Fixtures of the crash-schedule tests: the forking runner, with the Prefect API of the
session harness and the metadata registry in PostgreSQL."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL

from .harness import Zygote

META = "crash-meta"


@pytest.fixture(scope="module")
def meta_block(pg_url: str, pg_engine, prefect_harness: None) -> str:
    from blocks.bootstrap import connector_from_url
    from shopfloor.db.engine import init_db

    init_db(pg_engine)  # the registry and the claims' tables
    connector_from_url(pg_url).save(META, overwrite=True)
    return META


def start_zygote(modules: list[str], log_dir: Path) -> Zygote:
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(),
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for name in ("SHOPFLOOR_FAULT_KILL_AT", "SHOPFLOOR_FAULT_PAUSE_AT"):
        env.pop(name, None)
    return Zygote(modules, env, log_dir / "runs.log")


@pytest.fixture(scope="module")
def zygote_factory(tmp_path_factory, prefect_harness: None) -> Iterator:
    started: list[Zygote] = []

    def make(*modules: str) -> Zygote:
        z = start_zygote(list(modules), tmp_path_factory.mktemp("zygote"))
        started.append(z)
        return z

    yield make
    for z in started:
        z.close()


# -- the report of `make crash`: schedules held per flow ------------------------------
_held: dict[str, list[str]] = {}


def pytest_runtest_logreport(report) -> None:
    if report.when != "call" or "tests/crash/" not in report.nodeid.replace("\\", "/"):
        return
    flow = report.nodeid.split("/")[-1].split(".py")[0].removeprefix("test_")
    _held.setdefault(flow, []).append(report.outcome)


def pytest_terminal_summary(terminalreporter) -> None:
    if not _held:
        return
    terminalreporter.section("crash schedules")
    for flow, outcomes in sorted(_held.items()):
        held = outcomes.count("passed")
        terminalreporter.write_line(f"{flow}: {held} of {len(outcomes)} schedules held")
