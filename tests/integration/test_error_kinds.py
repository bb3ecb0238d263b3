"""The three kinds of error (shopfloor/errors.py) as a user meets them: a user error is
one line and exit 2 before any flow run; an integrity stop fails the run with its cause
and is never retried; an operational error is retried."""

import pytest
from prefect import flow, task

from deployments.cli import exit_code
from shopfloor.compaction.claims import ClaimLost
from shopfloor.errors import DataIntegrityError, ShopfloorError, UserError, retryable
from shopfloor.lake.claims import PartitionClaimLost
from tasks.runtime import transient
from tests.integration.test_cli import run

calls: list[str] = []


@task(retries=2, retry_delay_seconds=0, retry_condition_fn=transient)
def _failing(kind: str) -> None:
    calls.append(kind)
    raise {"integrity": ClaimLost("claim taken over by run r2"),
           "user": UserError("unknown time zone 'Mars/Base'"),
           "operational": ShopfloorError("cannot connect to database")}[kind]


@flow
def _run(kind: str) -> None:
    _failing(kind)


@pytest.mark.parametrize("kind, attempts", [("integrity", 1), ("user", 1), ("operational", 3)])
def test_a_task_retries_only_what_may_pass(kind, attempts, prefect_harness):
    calls.clear()
    state = _run(kind, return_state=True)
    assert state.is_failed()
    assert calls == [kind] * attempts
    # The run's final state names the cause.
    assert {"integrity": "claim taken over by run r2", "user": "Mars/Base",
            "operational": "cannot connect"}[kind] in state.message


def test_the_kinds_and_their_exit_codes():
    assert issubclass(PartitionClaimLost, DataIntegrityError)
    assert not retryable(ClaimLost("x")) and not retryable(UserError("x"))
    assert retryable(ShopfloorError("x")) and retryable(ConnectionError("x"))
    assert [exit_code(e) for e in (UserError("x"), DataIntegrityError("x"),
                                   ShopfloorError("x"))] == [2, 3, 1]


def test_a_user_error_is_one_line_and_exit_2_before_any_flow_run(tmp_path):
    res = run(["hourly", "aggregate", "--timezone", "Mars/Base"], tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: unknown time zone 'Mars/Base': use an IANA name such as 'UTC' or "
        "'Asia/Jakarta'"]
    assert "Beginning flow run" not in res.stdout + res.stderr
