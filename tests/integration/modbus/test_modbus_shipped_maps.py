"""The shipped register maps against the simulator, and `modbus read` on a missing tag."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from deployments.cli import app
from shopfloor.modbus.capture import CaptureStats, capture_device
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.simulator import ModbusSimulator, SimulatedDevice
from shopfloor.modbus.sink import ReadingSink
from shopfloor.modbus.tags import TagSpec, load_register_map
from tests.conftest import free_port

MAPS = Path(__file__).resolve().parents[3] / "maps"


@pytest.mark.parametrize("name", ["simulator.yaml", "example-plc.yaml"])
def test_every_tag_of_a_shipped_map_is_served_and_valid(name: str):
    tags = load_register_map(MAPS / name)
    dev = SimulatedDevice(free_port(), tags)
    cfg = DeviceConfig("map-check", "L1", tuple(tags), port=dev.port, timeout_seconds=2)
    batches: list = []
    with ModbusSimulator([dev]):
        stats = capture_device(cfg, 1, 0.0, 1_700_000_000.0, batches.append)
    assert stats.samples_ok == 1, stats.last_error
    (row,) = batches[0].frame().to_dict("records")
    assert row["missing_tags"] == ""
    valid, quarantined = ReadingSink(cfg, CaptureStats("map-check"), "t").validate(batches[0])
    assert len(valid) == 1 and not quarantined


def test_read_never_says_ok_next_to_a_missing_tag(simulator, prefect_harness):
    from blocks.modbus import ModbusDevice

    dev = simulator["ok-1"]
    ghost = TagSpec(name="ghost", column="ghost", address=500, data_type="uint16")
    ModbusDevice(port=dev.port, loc_id="L-GHOST", timeout_seconds=1, retries=0,
                 register_map=[*dev.tags, ghost]).save("mb-ghost", overwrite=True)
    res = CliRunner().invoke(app, ["modbus", "read", "mb-ghost"])
    assert res.exit_code == 0, res.output
    lines = {ln.split()[0]: ln for ln in res.output.splitlines() if ln and ln[0] != "r"}
    assert lines["ghost"].endswith("MISSING: the read failed") and " ok" not in lines["ghost"]
    assert lines["air_temp"].endswith("ok")  # the tags that were read are still judged
    assert "missing tags: ghost (modbus exception 2" in res.output
