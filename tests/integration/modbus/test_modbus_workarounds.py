"""The Modbus workarounds and the sub-register types against the pymodbus simulator.

Each workaround test first polls a fussy simulated device without the workaround and
sees it misbehave (so the quirk is real), then with it and reads every tag. The type
tests serve fixed values and check the capture decodes each one exactly.
"""

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest

from shopfloor.modbus.batch import Batch
from shopfloor.modbus.capture import CaptureStats, capture_device
from shopfloor.modbus.client import (
    DeviceConfig,
    SampleResult,
    device_plan,
    make_client,
    poll_sample,
)
from shopfloor.modbus.decoding import decode
from shopfloor.modbus.engine import (
    DeviceJob,
    capture_devices,
    make_async_client,
    poll_sample_async,
)
from shopfloor.modbus.simulator import (
    DeviceQuirks,
    ModbusSimulator,
    SimulatedDevice,
    default_map,
)
from shopfloor.modbus.tags import TagSpec
from tests.conftest import free_port

# Generous windows, so a loaded machine neither hides a quirk nor trips one by accident:
# a bare client hits each quirk by a wide margin, the workaround clears it by one.
TIMEOUT = 1.0

COIL_MAP = [
    TagSpec(name="level", column="level", address=0, data_type="uint16"),
    TagSpec(name="pump_on", column="pump_on", register_type="coil", address=5,
            data_type="bool"),
]
TYPES_MAP = [
    TagSpec(name="half", column="half", address=0, data_type="float16"),
    TagSpec(name="half_ba", column="half_ba", address=1, data_type="float16", byte_order="BA"),
    TagSpec(name="lo_s", column="lo_s", address=2, data_type="int8l"),
    TagSpec(name="hi_s", column="hi_s", address=2, data_type="int8h"),
    TagSpec(name="lo_u", column="lo_u", address=3, data_type="uint8l"),
    TagSpec(name="hi_u", column="hi_u", address=3, data_type="uint8h", scale=0.5),
    TagSpec(name="flag", column="flag", address=4, data_type="bit", bit=0),
    TagSpec(name="mode", column="mode", address=4, data_type="bitfield", bit=4, bit_count=3),
    TagSpec(name="step", column="step", address=4, data_type="bitfield", bit=8, bit_count=8,
            scale=0.1),
    TagSpec(name="swapped_bytes", column="swapped_bytes", address=5, data_type="uint8h",
            byte_order="BA"),
]
TYPES_VALUES: dict[str, float | str] = {
    "half": 21.5, "half_ba": -0.125, "lo_s": -5, "hi_s": 100, "lo_u": 200, "hi_u": 3.5,
    "flag": 1, "mode": 5, "step": 25.5, "swapped_bytes": 171,
}
STRING_MAP = [
    TagSpec(name="lower", column="lower", address=0, data_type="string", length=4,
            string_register_location="lower"),
    TagSpec(name="upper", column="upper", address=4, data_type="string", length=3,
            string_register_location="upper"),
    TagSpec(name="swapped", column="swapped", address=8, data_type="string", length=3,
            byte_order="BA"),
]
STRING_VALUES: dict[str, float | str] = {"lower": "PUMP", "upper": "MIX", "swapped": "LINE-2"}


def _devices() -> dict[str, SimulatedDevice]:
    fussy = {
        "after-connect": DeviceQuirks(drop_seconds_after_connect=1.0),
        "between": DeviceQuirks(drop_seconds_between_requests=0.5),
        "idle": DeviceQuirks(deaf_after_idle_seconds=0.5),
        "one-tag": DeviceQuirks(one_tag_per_request=True),
    }
    devices = {key: SimulatedDevice(free_port(), default_map(), quirks=q)
               for key, q in fussy.items()}
    devices["coils"] = SimulatedDevice(free_port(), COIL_MAP,
                                       quirks=DeviceQuirks(coils_from_zero=True))
    devices["types"] = SimulatedDevice(free_port(), TYPES_MAP, values=TYPES_VALUES)
    devices["types-rtu"] = SimulatedDevice(free_port(), TYPES_MAP, values=TYPES_VALUES,
                                           framer="rtu", unit_id=3)
    devices["strings"] = SimulatedDevice(free_port(), STRING_MAP, values=STRING_VALUES)
    return devices


@pytest.fixture(scope="module")
def sim() -> Iterator[dict[str, SimulatedDevice]]:
    devices = _devices()
    with ModbusSimulator(list(devices.values())):
        yield devices


def _config(device: SimulatedDevice, **settings: object) -> DeviceConfig:
    transport = "rtu-over-tcp" if device.framer == "rtu" else "tcp"
    return DeviceConfig(name="fussy", loc_id="L1", tags=tuple(device.tags), port=device.port,
                        unit_id=device.unit_id, transport=transport, timeout_seconds=TIMEOUT,
                        retries=0, **settings)  # type: ignore[arg-type]


def _polls(cfg: DeviceConfig, count: int, gap: float = 0.0) -> list[SampleResult]:
    """``count`` polls of one client, ``gap`` seconds apart (as the capture polls)."""
    client, plan, results = make_client(cfg), device_plan(cfg), []
    try:
        for k in range(count):
            if k:
                time.sleep(gap)
            results.append(poll_sample(client, plan, cfg, deadline=time.time() + 10))
    finally:
        client.close()
    return results


def _polls_async(cfg: DeviceConfig, count: int, gap: float = 0.0) -> list[SampleResult]:
    """The same polls through the capture engine's asyncio client."""
    async def polls() -> list[SampleResult]:
        client, plan, results = make_async_client(cfg), device_plan(cfg), []
        try:
            for k in range(count):
                if k:
                    await asyncio.sleep(gap)
                results.append(await poll_sample_async(client, plan, cfg,
                                                       deadline=time.time() + 10))
        finally:
            client.close()
        return results

    return asyncio.run(polls())


Polls = Callable[..., list[SampleResult]]


@pytest.fixture(params=["thread", "engine"])
def polls(request: pytest.FixtureRequest) -> Polls:
    """Each workaround against both clients: the threaded capture's (``capture_device``,
    serial devices and ``shopfloor modbus read``) and the async engine's (a flow run)."""
    return _polls if request.param == "thread" else _polls_async


def _values(cfg: DeviceConfig, result: SampleResult) -> dict[str, object]:
    values: dict[str, object] = {}
    for i, request in enumerate(device_plan(cfg)):
        payload = result.payloads.get(i)
        for tag in request.tags if payload is not None else []:
            at = tag.address - request.address
            values[tag.name] = decode(tag, payload[at:at + tag.width])
    return values


def _all_read(cfg: DeviceConfig, results: list[SampleResult]) -> bool:
    names = {t.name for t in cfg.tags}
    return all(not r.errors and set(_values(cfg, r)) == names for r in results)


def test_pause_after_connect(sim: dict[str, SimulatedDevice], polls: Polls):
    """A device that drops what comes in its first second of a connection: without the
    pause every poll times out (each failure reconnects, so it never gets past it)."""
    device = sim["after-connect"]
    bare = _config(device)
    assert not any(r.ok for r in polls(bare, 2))
    assert device.dropped >= 2
    paused = _config(device, pause_after_connect_seconds=1.1)
    assert _all_read(paused, polls(paused, 3))


def test_pause_between_requests(sim: dict[str, SimulatedDevice], polls: Polls):
    """A device that drops a request arriving within 0.5 s of its last answer: without
    the pause the second read of a poll goes unanswered."""
    device = sim["between"]
    bare = _config(device)
    assert len(device_plan(bare)) == 3  # holding, input, coil: three requests a poll
    results = polls(bare, 1)
    assert results[0].requests_failed >= 1 and device.dropped >= 1
    paused = _config(device, pause_between_requests_seconds=0.6)
    assert _all_read(paused, polls(paused, 2, gap=0.7))


def test_close_connection_after_poll(sim: dict[str, SimulatedDevice], polls: Polls):
    """A gateway that goes deaf on a connection idle over 0.5 s: polls 1 s apart on one
    kept connection time out; closing after each poll makes each poll a new session."""
    device = sim["idle"]
    bare = _config(device)
    kept = polls(bare, 2, gap=1.0)
    assert kept[0].ok and not kept[1].ok
    closing = _config(device, close_connection_after_poll=True)
    before = device.connections
    assert _all_read(closing, polls(closing, 3, gap=1.0))
    assert device.connections - before == 3  # one connection per poll


def test_one_request_per_tag(sim: dict[str, SimulatedDevice], polls: Polls):
    """A device that refuses a read spanning two tags (exception 3): the merged holding
    read loses both its tags; one request per tag reads each."""
    device = sim["one-tag"]
    bare = _config(device)
    merged = polls(bare, 1)[0]
    assert any("modbus exception 3" in e for e in merged.errors)
    assert {"air_temp", "air_rh"}.isdisjoint(_values(bare, merged))
    single = _config(device, one_request_per_tag=True)
    assert len(device_plan(single)) == len(device.tags)
    assert _all_read(single, polls(single, 2))


def test_read_coils_starting_at_zero(sim: dict[str, SimulatedDevice], polls: Polls):
    """A device that refuses coil reads not starting at address 0 (exception 2)."""
    device = sim["coils"]
    bare = _config(device)
    result = polls(bare, 1)[0]
    assert any("modbus exception 2 reading coil 5" in e for e in result.errors)
    from_zero = _config(device, read_coils_starting_at_zero=True)
    coil_read = [r for r in device_plan(from_zero) if r.register_type == "coil"]
    assert [(r.address, r.count) for r in coil_read] == [(0, 6)]
    results = polls(from_zero, 2)
    assert _all_read(from_zero, results)
    assert _values(from_zero, results[0])["pump_on"] == 1.0  # the coil at 5, not at 0


def _captured(cfg: DeviceConfig, samples: int = 2, engine: bool = False) -> Batch:
    batches: list[Batch] = []
    # interval 0: samples back to back, one batch, no slot to miss on a loaded machine
    if engine:
        capture_devices([DeviceJob(cfg, batches.append, CaptureStats(cfg.name))],
                        samples=samples, interval=0.0, anchor=time.time())
    else:
        capture_device(cfg, samples=samples, interval=0.0, anchor=time.time(),
                       sink=batches.append)
    assert len(batches) == 1
    return batches[0]


@pytest.mark.parametrize("engine", [False, True], ids=["thread", "engine"])
@pytest.mark.parametrize("key", ["types", "types-rtu"])
def test_float16_bytes_and_bitfields_decode_exactly(sim: dict[str, SimulatedDevice], key: str,
                                                    engine: bool):
    """FLOAT16, each byte of a register (signed, unsigned, scaled, after a byte swap) and
    bitfields sharing a register with a bit, through the capture's batch decoding, over
    Modbus TCP and RTU framing over TCP."""
    device = sim[key]
    batch = _captured(_config(device), engine=engine)
    frame = batch.frame()
    assert len(frame) == 2 and list(batch.missing) == ["", ""]
    for name, value in TYPES_VALUES.items():
        assert frame[name].tolist() == [pytest.approx(value, abs=1e-9)] * 2, name


def test_string_register_location_and_swapped_strings(sim: dict[str, SimulatedDevice],
                                                     polls: Polls):
    """One character per register in its lower or upper byte (Telegraf's
    ``string_register_location``), and a string with its bytes swapped in each register."""
    device = sim["strings"]
    cfg = _config(device)
    results = polls(cfg, 1)
    assert _all_read(cfg, results)
    assert _values(cfg, results[0]) == STRING_VALUES
    frame = _captured(cfg, samples=1).frame()
    assert {k: frame[k].tolist() for k in STRING_VALUES} == {
        k: [v] for k, v in STRING_VALUES.items()}
