"""``shopfloor modbus add-device`` and ``shopfloor simulate modbus`` as a user runs them."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from deployments.cli import app, load_group
from deployments.flowcli import load
from shopfloor.errors import ShopfloorError
from shopfloor.modbus.simulator import default_map, free_port_run

# The command's options are read from the real flow, before a test patches it.
load(load_group("modbus").commands["capture"])

SHOPFLOOR = str(Path(sys.executable).with_name("shopfloor"))


def _write_map(path: Path, tags: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"tags": tags}))
    return path


def test_add_device_saves_a_block_from_a_yaml_map(tmp_path: Path, prefect_harness):
    from blocks.modbus import ModbusDevice

    tags = [t.model_dump(exclude_defaults=True) for t in default_map()]
    path = _write_map(tmp_path / "plc.yaml", tags)
    res = CliRunner().invoke(app, ["modbus", "add-device", "cli-plc", "--map", str(path),
                                   "--loc-id", "L9", "--port", "5021", "--district", "D1"])
    assert res.exit_code == 0, res.output
    assert "4 tags in 3 reads" in res.output
    block = ModbusDevice.load("cli-plc")
    assert (block.port, block.loc_id, block.district) == (5021, "L9", "D1")
    assert block.register_map == default_map()


def test_add_device_rejects_an_invalid_map_naming_the_tag(tmp_path: Path, prefect_harness):
    path = _write_map(tmp_path / "bad.yaml", [
        {"name": "a", "column": "temperature", "address": 0, "data_type": "float32"},
        {"name": "b", "column": "humidity", "address": 1}])
    res = CliRunner().invoke(app, ["modbus", "add-device", "bad-plc", "--map", str(path),
                                   "--loc-id", "L1"])
    assert isinstance(res.exception, ShopfloorError)
    assert "tag 'b' overlaps tag 'a'" in str(res.exception)


def test_add_device_applies_the_maps_workarounds_unless_an_option_names_one(
        tmp_path: Path, prefect_harness):
    from blocks.modbus import ModbusDevice

    tags = [t.model_dump(exclude_defaults=True) for t in default_map()]
    path = tmp_path / "fussy.yaml"
    path.write_text(yaml.safe_dump({"workarounds": {
        "pause_after_connect_seconds": 0.5, "one_request_per_tag": True,
        "close_connection_after_poll": True}, "tags": tags}, sort_keys=False))
    res = CliRunner().invoke(app, ["modbus", "add-device", "fussy-plc", "--map", str(path),
                                   "--loc-id", "L5", "--pause-after-connect", "1.5",
                                   "--pause-between-requests", "0.05"])
    assert res.exit_code == 0, res.output
    assert "4 tags in 4 reads" in res.output  # one request per tag, from the map
    block = ModbusDevice.load("fussy-plc")
    assert (block.pause_after_connect_seconds, block.pause_between_requests_seconds,
            block.close_connection_after_poll, block.one_request_per_tag,
            block.read_coils_starting_at_zero) == (1.5, 0.05, True, True, False)
    path.write_text(path.read_text().replace("one_request_per_tag: true",
                                             "one_request_per_tag: maybe"))
    res = CliRunner().invoke(app, ["modbus", "add-device", "fussy-plc", "--map", str(path),
                                   "--loc-id", "L5"])
    assert isinstance(res.exception, ShopfloorError)
    assert "fussy.yaml: invalid register map: line 3: workarounds one_request_per_tag" in str(
        res.exception)


def _wait_listening(port: int, proc: subprocess.Popen, seconds: float = 180.0) -> None:
    """Until the simulator answers on ``port``: a slow start on a loaded machine is waited
    for, a simulator that died fails at once with what it printed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"simulator exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"simulator did not listen on {port} in {seconds:.0f} s")


def test_simulate_command_serves_devices_with_a_fault(tmp_path: Path):
    from shopfloor.modbus.capture import capture_device
    from shopfloor.modbus.client import DeviceConfig

    port = free_port_run(2)  # device i listens on port + i - 1: both must be free
    proc = subprocess.Popen([SHOPFLOOR, "simulate", "modbus", "--port", str(port),
                             "--devices", "2", "--fault", "2=exception", "--duration", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_listening(port, proc)
        _wait_listening(port + 1, proc)
        got = []
        ok = DeviceConfig("sim-1", "L1", tuple(default_map()), port=port, timeout_seconds=1)
        stats = capture_device(ok, 1, 0.0, time.time(), got.append)
        assert stats.samples_ok == 1 and -20 <= got[0].frame().loc[0, "temperature"] <= 80
        bad = DeviceConfig("sim-2", "L2", tuple(default_map()), port=port + 1, retries=0)
        stats = capture_device(bad, 1, 0.0, time.time(), got.append)
        assert stats.samples_failed == 1 and "exception 4" in stats.last_error
    finally:
        proc.terminate()
        proc.wait(10)


def test_read_prints_values_and_rejections(device_blocks):
    res = CliRunner().invoke(app, ["modbus", "read", "mb-bad-out-of-range"])
    assert res.exit_code == 0, res.output
    lines = {ln.split()[0]: ln for ln in res.output.splitlines() if ln and ln[0] != "r"}
    assert "REJECTED: in_range" in lines["air_temp"] and lines["air_rh"].endswith("ok")
    assert "read holding 0+3: air_temp, air_rh" in res.output


def test_read_of_a_dead_device_is_one_clear_error(device_blocks):
    res = CliRunner().invoke(app, ["modbus", "read", "mb-bad-refuse"])
    assert isinstance(res.exception, ShopfloorError)
    assert "did not answer: connection refused" in str(res.exception)


def test_add_device_with_a_bad_setting_is_one_clear_error(tmp_path: Path, prefect_harness):
    tags = [t.model_dump(exclude_defaults=True) for t in default_map()]
    path = _write_map(tmp_path / "plc.yaml", tags)
    res = CliRunner().invoke(app, ["modbus", "add-device", "bad-port", "--map", str(path),
                                   "--loc-id", "L1", "--port", "70000"])
    assert isinstance(res.exception, ShopfloorError)
    assert str(res.exception).startswith("device bad-port: port: Input should be less than")


def test_add_device_passes_serial_settings(tmp_path: Path, prefect_harness):
    from blocks.modbus import ModbusDevice

    path = _write_map(tmp_path / "plc.yaml", [t.model_dump() for t in default_map()])
    res = CliRunner().invoke(app, ["modbus", "add-device", "rtu-plc", "--map", str(path),
                                   "--loc-id", "L8", "--transport", "serial", "--serial-port",
                                   "/dev/ttyS9", "--parity", "E", "--stopbits", "2",
                                   "--max-bits", "100", "--max-gap", "2"])
    assert res.exit_code == 0, res.output
    block = ModbusDevice.load("rtu-plc")
    assert (block.parity, block.stopbits, block.max_bits_per_request,
            block.max_gap_registers) == ("E", 2, 100, 2)


@pytest.mark.parametrize("args, message", [
    (["mb-ok-1", "--samples", "0"],
     "Invalid value for '--samples': Input should be greater than or equal to 1"),
    (["mb-ok-1", "--interval-seconds", "-1"],
     "Invalid value for '--interval-seconds': Input should be greater"),
    (["Line1_PLC"], "devices.0: 'Line1_PLC' is not a block name: use lower-case letters"),
    (["mb-ok-1", "mb-ok-1"], "devices listed twice: mb-ok-1"),
    (["mb-ok-1", "--samples", "2", "--interval-seconds", "0"], "must be > 0"),
    (["mb-ok-1", "no-such-plc"], "block 'no-such-plc' not found"),
    (["mb-ok-1", "--target-db", "no-such-db"], "block 'no-such-db' not found"),
    (["mb-ok-1", "--no-write-raw", "--land-json", "--raw-logs", "nowhere"],
     "block 'nowhere' not found"),
])
def test_capture_refuses_bad_parameters_before_a_flow_run(device_blocks, monkeypatch, args,
                                                          message):
    import flows.modbus_capture

    monkeypatch.setattr(flows.modbus_capture, "modbus_capture",
                        _NotStarted(flows.modbus_capture.modbus_capture))
    res = CliRunner().invoke(app, ["modbus", "capture", *args])
    assert isinstance(res.exception, ShopfloorError), res.output
    assert message in str(res.exception)


class _NotStarted:
    """The capture flow's parameter check, but calling it (starting a run) fails the test."""

    def __init__(self, flow):
        self.flow = flow
        self.fn = flow.fn  # what the parameter check reads the types from

    def __call__(self, **_kwargs):
        raise AssertionError("the flow was started")


def test_capture_prints_one_line_per_device(device_blocks, raw_logs: Path):
    # Lands JSON instead of writing temperature_raw: the flow tests count those rows.
    res = CliRunner().invoke(app, ["modbus", "capture", "mb-ok-1", "mb-bad-refuse",
                                   "--no-write-raw", "--land-json", "--raw-logs",
                                   "modbus-test-raw", "--samples", "1"])
    assert res.exit_code == 0, res.output
    lines = {ln.split(":")[0]: ln for ln in res.output.splitlines() if ln.startswith("mb-")}
    assert "samples_ok 1, samples_failed 0" in lines["mb-ok-1"]
    assert "rows_valid 1, rows_written 0" in lines["mb-ok-1"]
    assert "objects_landed 1" in lines["mb-ok-1"]
    assert "samples_ok 0, samples_failed 1" in lines["mb-bad-refuse"]
    assert "last_error connection refused" in lines["mb-bad-refuse"]
    assert len(list(raw_logs.rglob("*.json"))) == 1


def test_capture_refuses_a_span_longer_than_the_timeout(device_blocks, monkeypatch):
    import flows.modbus_capture

    monkeypatch.setattr(flows.modbus_capture, "modbus_capture",
                        _NotStarted(flows.modbus_capture.modbus_capture))
    res = CliRunner().invoke(app, ["modbus", "capture", "mb-ok-1", "--span-seconds", "7200"])
    assert isinstance(res.exception, ShopfloorError), res.output
    assert "longer than the 4080 s its timeout allows" in str(res.exception)
