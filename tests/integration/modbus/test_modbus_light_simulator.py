"""The light simulator (benchmarks' many devices): real Modbus TCP that pymodbus' client
and the capture engine read, the same values as the full simulator's sines."""

import math
import time

import pytest
from pymodbus.client import ModbusTcpClient

from shopfloor.errors import ShopfloorError
from shopfloor.modbus.capture import CaptureStats, schedule_anchor
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.decoding import decode
from shopfloor.modbus.engine import DeviceJob, capture_devices
from shopfloor.modbus.simulator import (
    LIGHT_VALUE_SETS,
    LightModbusSimulator,
    build_devices,
    free_port_run,
    tag_value,
    wide_map,
)


def test_light_devices_answer_the_sine_values_and_refuse_what_they_lack():
    tags = wide_map(4)
    port = free_port_run(3)
    devices = build_devices(port, 3, tags, {3: "refuse"})
    with LightModbusSimulator(devices):
        for i in (0, 1):
            client = ModbusTcpClient("127.0.0.1", port=port + i, timeout=2)
            assert client.connect()
            try:
                before = math.floor(time.time())
                words = client.read_holding_registers(0, count=8, device_id=1).registers
                after = math.floor(time.time())
                for tag in tags:
                    got = decode(tag, words[tag.address:tag.end])
                    expected = {tag_value(tag, s, 0.7 * (i % LIGHT_VALUE_SETS))
                                for s in (before, after)}
                    assert min(abs(got - e) for e in expected) < 1e-3, (tag.name, got)
                assert client.read_coils(0, count=1, device_id=1).exception_code == 1
                assert client.read_holding_registers(1000, count=2,
                                                     device_id=1).exception_code == 2
            finally:
                client.close()
        assert devices[0].requests == 3 and devices[1].connections == 1
        refused = ModbusTcpClient("127.0.0.1", port=port + 2, timeout=1)
        assert not refused.connect()  # nothing listens on a refusing device's port


def test_the_engine_captures_light_devices_on_the_grid():
    tags = wide_map(20)
    port = free_port_run(5)
    devices = build_devices(port, 5, tags)
    configs = [DeviceConfig(name=f"l{i}", loc_id=f"L{i}", tags=tuple(tags), port=port + i,
                            timeout_seconds=1.0, retries=1, backoff_seconds=0.05)
               for i in range(5)]
    batches: list = []
    jobs = [DeviceJob(c, batches.append, CaptureStats(c.name)) for c in configs]
    with LightModbusSimulator(devices):
        stats = capture_devices(jobs, 3, 0.5, schedule_anchor(0.5, time.time() + 0.5))
    assert [s.samples_ok for s in stats] == [3] * 5
    assert sum(len(b) for b in batches) == 15  # every slot decoded


def test_the_light_simulator_refuses_what_it_does_not_play():
    devices = build_devices(free_port_run(2), 2, wide_map(2), {2: "no-answer"})
    with pytest.raises(ShopfloorError, match="light simulator"):
        LightModbusSimulator(devices)
