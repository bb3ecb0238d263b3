"""How a capture run ends and what it tells the automations, decided in shopfloor."""

import pytest

from shopfloor.errors import UserError
from shopfloor.modbus.capture import CaptureStats, check_landing
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.outcome import (
    CAPTURED_EVENT,
    DEAD_EVENT,
    artifact_key,
    device_events,
    final_verdict,
    verdict,
)
from shopfloor.modbus.tags import TagSpec
from shopfloor.outcome import Verdict

TAGS = (TagSpec(name="t", column="temperature", address=0),)


def _stats(name: str, valid: int, quarantined: int = 0, error: str = "") -> CaptureStats:
    return CaptureStats(name, rows_valid=valid, rows_quarantined=quarantined,
                        last_error=error)


def _cfg(name: str, district: str | None = None) -> DeviceConfig:
    return DeviceConfig(name=name, host="127.0.0.1", port=5020, loc_id=name, tags=TAGS,
                        district=district)


def test_verdicts():
    good, other = _stats("a", 12), _stats("b", 12)
    assert verdict([good, other]) == Verdict("completed")
    dead = _stats("c", 0, error="connection refused")
    nan = _stats("n", 0, quarantined=12)
    v = verdict([good, dead])
    assert v.kind == "degraded" and "c (connection refused)" in v.message
    v = verdict([good, _stats("q", 10, quarantined=2)])
    assert v.kind == "degraded" and "quarantined: q 2" in v.message
    v = verdict([good], missed_at_start=4)
    assert v.kind == "degraded" and "first 4 slots" in v.message
    v = verdict([nan])
    assert v.kind == "failed" and "n: all 12 readings quarantined" in v.message
    v = verdict([dead, nan])
    assert v.kind == "failed" and "c: connection refused" in v.message


@pytest.mark.parametrize(("judged", "summary", "backlog", "expected"), [
    (Verdict("completed"), "", False, Verdict("completed")),
    # everything forwarded: the buffer's line is logged, the run is plain Completed
    (Verdict("completed"), "buffered 12, forwarded 12", False, Verdict("completed")),
    # everything buffered, not all forwarded: the run did its job, the backlog is named
    (Verdict("completed"), "warehouse backlog 5", True,
     Verdict("completed", "warehouse backlog 5")),
    (Verdict("degraded", "a dead"), "buffered 3", False, Verdict("degraded", "a dead")),
    (Verdict("degraded", "a dead"), "warehouse backlog 5", True,
     Verdict("degraded", "a dead; warehouse backlog 5")),
    (Verdict("failed", "no valid reading"), "buffer not written", True,
     Verdict("failed", "no valid reading (buffer not written)")),
    (Verdict("failed", "no valid reading"), "", False, Verdict("failed", "no valid reading")),
])
def test_the_final_verdict_names_what_the_buffer_kept(judged, summary, backlog, expected):
    assert final_verdict(judged, summary, backlog) == expected


def test_one_event_per_device_dead_or_captured_with_its_district():
    events = device_events([_cfg("plc-1", "D01"), _cfg("plc-2")],
                           [_stats("plc-1", 3), _stats("plc-2", 0, error="timeout")])
    assert [(e.event, e.resource, e.labels) for e in events] == [
        (CAPTURED_EVENT, "shopfloor.device.plc-1", {"shopfloor.district": "D01"}),
        (DEAD_EVENT, "shopfloor.device.plc-2", {})]
    assert "last_error" not in events[0].payload
    assert events[1].payload["last_error"] == "timeout"


def test_artifact_keys_are_lowercase_and_dashes():
    assert artifact_key("Line_1 PLC") == "modbus-capture-line-1-plc"


def test_landing_needs_a_district_on_every_device():
    check_landing([_cfg("a", "D01")])
    with pytest.raises(UserError, match="missing on b"):
        check_landing([_cfg("a", "D01"), _cfg("b")])
