"""A compaction run's final state, decided in shopfloor (the flow only applies it)."""

from shopfloor.compaction.compact import CompactResult
from shopfloor.compaction.outcome import Served, summarise, verdict


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
