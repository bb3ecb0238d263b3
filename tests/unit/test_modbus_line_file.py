"""The line file: schema, defaults, relative maps, errors naming line and key, changes."""

from pathlib import Path

import pytest

from shopfloor.errors import UserError
from shopfloor.modbus.line import describe_line, load_line, record_run, state_path

ROOT = Path(__file__).resolve().parents[2]
TAG = ("{name: t, column: temperature, address: 0, data_type: float32, byte_order: CDAB}")


def _write(tmp_path: Path, text: str, name: str = "line.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _error(path: Path) -> str:
    with pytest.raises(UserError) as caught:
        load_line(path)
    return str(caught.value)


def test_the_shipped_example_loads():
    line = load_line(ROOT / "config" / "line-example.yaml")
    names = [d.name for d in line.devices]
    assert names == ["line1-plc", "line1-dryer-1", "line1-dryer-2"]
    assert all(d.district == "D01" and d.timeout_seconds == 1.0 for d in line.devices)
    dryers = [d for d in line.devices if d.host == "10.0.0.50"]
    assert [d.pause_between_requests_seconds for d in dryers] == [0.05, 0.05]
    assert line.devices[0].pause_between_requests_seconds == 0.0  # not behind the gateway
    assert line.gateway_limits() == {"10.0.0.50:502": 1}
    assert "gateway 10.0.0.50:502: concurrency 1" in describe_line(line)[-1]


def test_a_serial_device_takes_its_line_settings(tmp_path: Path):
    """RTU on a serial line: the port and the line's settings, defaults for the rest
    (9600 8N1); devices on one port share its lock, as devices behind one gateway do."""
    from shopfloor.modbus.gateway import gateway_key

    line = load_line(_write(tmp_path, (
        "defaults: {transport: serial, serial_port: /dev/ttyUSB0, baudrate: 19200}\n"
        "devices:\n"
        f"  - {{name: a, loc_id: L1, unit_id: 1, parity: E, tags: [{TAG}]}}\n"
        f"  - {{name: b, loc_id: L2, unit_id: 2, stopbits: 2, bytesize: 7, tags: [{TAG}]}}\n")))
    a, b = line.devices
    assert (a.transport, a.serial_port, a.baudrate, a.parity, a.stopbits, a.bytesize) == (
        "serial", "/dev/ttyUSB0", 19200, "E", 1, 8)
    assert (b.parity, b.stopbits, b.bytesize, b.unit_id) == ("N", 2, 7, 2)
    assert gateway_key(a) == gateway_key(b) == "serial:/dev/ttyUSB0"


def test_map_paths_are_relative_to_the_line_file(tmp_path: Path):
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "m.yaml").write_text(
        f"tags:\n  - {TAG}\nworkarounds:\n  one_request_per_tag: true\n", encoding="utf-8")
    sub = tmp_path / "lines"
    sub.mkdir()
    path = _write(sub, "devices:\n  - {name: a, loc_id: L1, map: ../maps/m.yaml}\n")
    (device,) = load_line(path).devices
    assert [t.name for t in device.tags] == ["t"]
    assert device.one_request_per_tag  # the map's workarounds apply


def test_defaults_apply_and_a_device_key_wins(tmp_path: Path):
    path = _write(tmp_path, f"""defaults:
  district: D9
  retries: 5
  host: 10.1.1.1
devices:
  - {{name: a, loc_id: L1, tags: [{TAG}]}}
  - {{name: b, loc_id: L2, retries: 0, host: 10.1.1.2, tags: [{TAG}]}}
""")
    a, b = load_line(path).devices
    assert (a.district, a.retries, a.host) == ("D9", 5, "10.1.1.1")
    assert (b.district, b.retries, b.host) == ("D9", 0, "10.1.1.2")
    assert a.port == 502 and a.timeout_seconds == 3.0  # DeviceConfig's defaults


def test_a_gateway_sets_its_devices_and_its_concurrency(tmp_path: Path):
    path = _write(tmp_path, f"""gateways:
  "GW.local:5020": {{concurrency: 2, pause_after_connect_seconds: 0.5}}
devices:
  - {{name: a, host: gw.local, port: 5020, loc_id: L1, tags: [{TAG}]}}
  - {{name: b, host: gw.local, port: 5020, loc_id: L2, pause_after_connect_seconds: 0,
      tags: [{TAG}]}}
""")
    line = load_line(path)
    assert [d.pause_after_connect_seconds for d in line.devices] == [0.5, 0.0]
    assert line.gateway_limits() == {"gw.local:5020": 2}


@pytest.mark.parametrize("text, expected", [
    ("devices:\n  - name: a\n    loc_id: L1\n    port: 0\n    tags: [" + TAG + "]\n",
     "line 4: device 'a' port: Input should be greater than or equal to 1"),
    ("devices:\n  - name: a\n    loc_id: L1\n    colour: red\n",
     "line 4: device 'a' colour: Extra inputs are not permitted"),
    ("devices:\n  - name: A_b\n    loc_id: L1\n",
     "line 2: device 'A_b' name: String should match pattern"),
    ("defaults:\n  retries: 99\ndevices:\n  - {name: a, loc_id: L1, tags: [" + TAG + "]}\n",
     "line 2: defaults retries: Input should be less than or equal to 10"),
    ("gateways:\n  'gw:1': {concurrency: 0}\ndevices:\n  - {name: a, loc_id: L1, "
     "host: gw, port: 1, tags: [" + TAG + "]}\n",
     "line 2: gateway gw:1 concurrency: Input should be greater than or equal to 1"),
    ("gateways:\n  'gw:1': {}\ndevices:\n  - {name: a, loc_id: L1, tags: [" + TAG + "]}\n",
     "line 2: gateway gw:1: no device of the line is behind it"),
    ("gateways:\n  gw: {}\ndevices:\n  - {name: a, loc_id: L1, tags: [" + TAG + "]}\n",
     "line 2: gateway 'gw': write it as host:port"),
    ("devices:\n  - name: a\n    loc_id: L1\n    map: nowhere.yaml\n",
     "line 4: device 'a' map: file not found: nowhere.yaml"),
    ("devices:\n  - name: a\n    loc_id: L1\n",
     "line 2: device 'a': give map (a file) or tags (inline), one of them"),
    ("devices:\n  - name: a\n    tags: [" + TAG + "]\n",
     "line 2: device 'a': loc_id is missing"),
    ("devices:\n  - {name: a, loc_id: L1, tags: [" + TAG + "]}\n"
     "  - {name: a, loc_id: L2, tags: [" + TAG + "]}\n",
     "line 3: device 'a' is listed twice"),
    ("devices:\n  - name: a\n    loc_id: L1\n    tags:\n      - name: t\n"
     "        column: temperature\n        address: 0\n        data_type: float99\n",
     "device 'a': invalid register map: line 8: tag 't' data_type"),
    ("devices:\n  - name: a\n    loc_id: L1\n    transport: serial\n    serial_port: /dev/x\n"
     "    stopbits: 3\n    tags: [" + TAG + "]\n",
     "line 6: device 'a' stopbits: Input should be less than or equal to 2"),
    ("devices:\n  - name: a\n    loc_id: L1\n    transport: serial\n    parity: even\n"
     "    tags: [" + TAG + "]\n", "line 5: device 'a' parity: Input should be 'N', 'E' or 'O'"),
    ("devices:\n  - name: a\n    loc_id: L1\n    transport: serial\n    tags: [" + TAG + "]\n",
     "line 4: device 'a': transport serial needs serial_port"),
    ("device:\n  - {name: a}\n", "line 1: unknown section device"),
    ("devices: []\n", "line 1: devices must be a list of at least one device"),
    ("devices: [\n", "not valid YAML"),
])
def test_an_error_names_the_file_line_and_key(tmp_path: Path, text: str, expected: str):
    message = _error(_write(tmp_path, text))
    assert message.startswith("line.yaml: ")
    assert expected in message
    assert "\n" not in message


def test_an_error_in_a_map_file_names_both_files(tmp_path: Path):
    _write(tmp_path, "tags:\n  - name: t\n    column: temperature\n    address: -1\n", "m.yaml")
    message = _error(_write(tmp_path, "devices:\n  - {name: a, loc_id: L1, map: m.yaml}\n"))
    assert message.startswith("line.yaml: device 'a' map: m.yaml: ")
    assert "line 4: tag 't' address" in message


def test_changes_since_the_last_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SHOPFLOOR_HOME", str(tmp_path / "home"))
    path = _write(tmp_path, f"devices:\n  - {{name: a, loc_id: L1, tags: [{TAG}]}}\n"
                            f"  - {{name: b, loc_id: L2, tags: [{TAG}]}}\n")
    first = load_line(path)
    assert record_run(path, first).describe() == "first run with this line file"
    assert record_run(path, load_line(path)).describe() == "no device changed"
    path.write_text(f"devices:\n  - {{name: a, loc_id: L9, tags: [{TAG}]}}\n"
                    f"  - {{name: c, loc_id: L3, tags: [{TAG}]}}\n", encoding="utf-8")
    second = load_line(path)
    changes = record_run(path, second)
    assert (changes.added, changes.removed, changes.changed) == (["c"], ["b"], ["a"])
    assert second.digest != first.digest


def test_the_view_kept_by_an_earlier_release_is_still_read(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    """The view moved from $SHOPFLOOR_HOME/lines/ to the buffer's folder (a Docker
    deployment keeps only that one); the first run after an upgrade still compares."""
    home = tmp_path / "home"
    monkeypatch.setenv("SHOPFLOOR_HOME", str(home))
    path = _write(tmp_path, f"devices:\n  - {{name: a, loc_id: L1, tags: [{TAG}]}}\n")
    record_run(path, load_line(path))
    kept = state_path(path)
    assert kept.parent == home / "buffer" / "lines"
    old = home / "lines" / kept.name
    old.parent.mkdir(parents=True)
    kept.replace(old)
    assert record_run(path, load_line(path)).describe() == "no device changed"
    assert kept.exists()


def test_the_hash_covers_the_map_files(tmp_path: Path):
    _write(tmp_path, f"tags:\n  - {TAG}\n", "m.yaml")
    path = _write(tmp_path, "devices:\n  - {name: a, loc_id: L1, map: m.yaml}\n")
    before = load_line(path).digest
    _write(tmp_path, f"tags:\n  - {TAG}\n  - {{name: h, column: humidity, address: 4}}\n",
           "m.yaml")
    assert load_line(path).digest != before


def test_a_gateway_concurrency_lets_that_many_polls_through():
    import asyncio
    import time

    from shopfloor.modbus.engine import Gateways
    from shopfloor.modbus.gateway import GatewayBusy

    async def inside(gateways: Gateways, key: str, n: int) -> list[str]:
        held = asyncio.Event()
        release = asyncio.Event()
        outcome: list[str] = []

        async def poll() -> None:
            try:
                async with gateways.hold(key, time.time() + 0.2, None):
                    outcome.append("in")
                    if len(outcome) == n:
                        held.set()
                    await release.wait()
            except GatewayBusy:
                outcome.append("busy")
                held.set()

        tasks = [asyncio.create_task(poll()) for _ in range(n)]
        await held.wait()
        release.set()
        await asyncio.gather(*tasks)
        return outcome

    assert asyncio.run(inside(Gateways(limits={"line-gw:2": 2}), "line-gw:2", 2)) == ["in", "in"]
    # the default: one poll at a time, the second waits out its deadline
    assert asyncio.run(inside(Gateways(), "line-gw:1", 2)) == ["in", "busy"]
