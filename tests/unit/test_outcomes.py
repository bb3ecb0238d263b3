"""A run's verdict, decided in shopfloor, and how a flow applies it (tasks.outcomes)."""

import pytest

from shopfloor.aggregation.locations import sync_row, sync_verdict
from shopfloor.db.credentials import FAILED, UNCHANGED, UPDATED, RefreshResult, refresh_verdict
from shopfloor.errors import DataIntegrityError, ShopfloorError
from shopfloor.outcome import Verdict, from_notes
from tasks.outcomes import DEGRADED, IDLE, conclude


def test_conclude_raises_the_failure_kind_the_verdict_names():
    with pytest.raises(ShopfloorError, match="boom") as err:
        conclude(Verdict("failed", "boom"), {})
    assert not isinstance(err.value, DataIntegrityError)
    with pytest.raises(DataIntegrityError, match="claim taken over"):
        conclude(Verdict("failed", "claim taken over", integrity=True), {})


def test_conclude_returns_named_states_or_the_summary():
    summary = {"rows": 3}
    idle = conclude(Verdict("idle", "nothing due"), summary)
    degraded = conclude(Verdict("degraded", "one device dead"), summary)
    noted = conclude(Verdict("completed", "backlog 5"), summary)
    assert (idle.name, idle.message, idle.result()) == (IDLE, "nothing due", summary)
    assert (degraded.name, degraded.message) == (DEGRADED, "one device dead")
    assert noted.is_completed() and noted.message == "backlog 5" and noted.result() == summary
    assert conclude(Verdict("completed"), summary) is summary


def test_notes_make_a_run_degraded():
    assert from_notes([]) == Verdict("completed")
    assert from_notes(["a", "b"]) == Verdict("degraded", "a; b")


def test_master_sync_outcomes():
    result = {"source_rows": 4, "upserted": 3, "quarantined": 0, "deactivated": ["L9"]}
    assert sync_verdict(result).kind == "completed"
    assert sync_row(result, 0.126) == {"source_rows": 4, "upserted": 3, "quarantined": 0,
                                       "deactivated": 1, "duration_s": 0.13}
    assert sync_verdict({**result, "source_rows": 0}).kind == "idle"
    v = sync_verdict({**result, "quarantined": 1})
    assert v == Verdict("degraded", "1 of 4 source locations quarantined (they keep their "
                                    "last good values)")


def test_credential_refresh_outcomes():
    same = RefreshResult("db-a", "s-a", UNCHANGED, "postgresql://u:***@h/d")
    new = RefreshResult("db-b", "s-b", UPDATED, "postgresql://u:***@h/d")
    bad = RefreshResult("db-c", "s-c", FAILED, "connection refused")
    assert refresh_verdict([same, new]).kind == "completed"
    assert refresh_verdict([same]).kind == "idle"
    assert refresh_verdict([same, bad]) == Verdict(
        "failed", "1 of 2 block(s) kept their old credentials: db-c: connection refused")
