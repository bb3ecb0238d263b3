"""A compaction run's final state, decided in shopfloor (the flow only applies it)."""

import pytest

from shopfloor.compaction.compact import CompactResult
from shopfloor.compaction.outcome import (
    Served,
    registration_description,
    registration_verdict,
    summarise,
    verdict,
)


def _served(succeeded: int, quarantined: int, failures=(), integrity=False) -> Served:
    r = CompactResult(succeeded=[f"k{i}" for i in range(succeeded)],
                      quarantined={f"q{i}": "bad" for i in range(quarantined)})
    return Served(claimed=succeeded + quarantined, districts=["D01"], results=[r],
                  failures=list(failures), integrity=integrity)


def _kind(served: Served) -> tuple[str, bool]:
    v = verdict(summarise("D01", served, 1.0), served)
    return v.kind, v.integrity


def test_every_outcome():
    assert _kind(Served()) == ("idle", False)
    assert _kind(_served(3, 0)) == ("completed", False)
    assert _kind(_served(3, 1)) == ("degraded", False)
    assert _kind(_served(0, 2)) == ("failed", False)
    assert _kind(_served(3, 0, ["D02: unreachable"])) == ("failed", False)
    # A district whose claim was taken over stops the run as an integrity failure.
    assert _kind(_served(3, 0, ["D02: claim taken over"], integrity=True)) == ("failed", True)
    assert summarise("D01", _served(3, 1), 1.0)["keys_quarantined"] == 1


def _counts(new: int, known: int, no_district: int) -> dict[str, int]:
    json = new + known + no_district
    return {"listed": json + 1, "json": json, "new": new, "known": known,
            "no_district": no_district}


@pytest.mark.parametrize(("counts", "kind", "says"), [
    (_counts(3, 1, 0), "completed", ""),
    (_counts(0, 4, 0), "idle", "nothing new: 5 objects listed"),
    (_counts(0, 0, 0), "idle", "nothing new: 1 objects listed"),
    (_counts(2, 0, 1), "degraded", "1 JSON keys skipped: they name no district; 2 new"),
    (_counts(0, 3, 1), "degraded", "1 JSON keys skipped"),
    (_counts(0, 0, 4), "failed", "all 4 JSON keys listed name no district"),
])
def test_every_registration_outcome(counts, kind, says):
    v = registration_verdict(counts)
    assert (v.kind, v.integrity) == (kind, False)
    assert says in v.message and (says or not v.message)


def test_the_registration_description_names_every_count():
    assert registration_description(_counts(2, 1, 1), "", "raw") == (
        "Keys under '(all)' of raw: 5 listed, 4 JSON, 2 new, 1 known, 1 without district")
