"""The ModbusDevice block, the add-device options and the capture flow's parameter schema
against the one declaration of a device's settings (no server)."""

import dataclasses
from pathlib import Path

import pytest
import typer
from prefect.testing.standard_test_suites import BlockStandardTestSuite

from blocks.modbus import ModbusDevice
from deployments.modbus_cli import modbus_app
from shopfloor.modbus.device import DEVICE_DEFAULTS, DEVICE_SETTINGS, DeviceConfig
from shopfloor.modbus.simulator import default_map

ROOT = Path(__file__).resolve().parents[2]

# A value other than the default for every setting: to_config must carry each one.
OTHER_VALUES = {
    "loc_id": "L7", "host": "10.0.0.5", "port": 1502, "unit_id": 9, "transport": "serial",
    "serial_port": "/dev/ttyUSB1", "baudrate": 19200, "parity": "E", "stopbits": 2,
    "bytesize": 7, "timeout_seconds": 1.5, "retries": 4, "backoff_seconds": 0.5,
    "max_registers_per_request": 60, "max_bits_per_request": 800, "max_gap_registers": 3,
    "district": "D01", "pause_after_connect_seconds": 0.5,
    "pause_between_requests_seconds": 0.1, "close_connection_after_poll": True,
    "one_request_per_tag": True, "read_coils_starting_at_zero": True,
}


def test_block_fields_are_the_device_settings_with_their_defaults():
    assert set(ModbusDevice.model_fields) == {*DEVICE_SETTINGS, "register_map"}
    for key in DEVICE_SETTINGS:
        field = ModbusDevice.model_fields[key]
        if key == "loc_id":
            assert field.is_required()
        else:
            assert field.default == getattr(DEVICE_DEFAULTS, key), key


def test_block_limits_are_the_line_files():
    """A setting refused in a line file is refused in a block too, and the other way
    round (the serial line's settings once had no limits in the block)."""
    from shopfloor.modbus.line import DeviceSettings

    for key in DEVICE_SETTINGS:
        if key != "loc_id":  # required in the block; a line file may leave it to defaults
            assert (ModbusDevice.model_fields[key].metadata
                    == DeviceSettings.model_fields[key].metadata), key


@pytest.mark.parametrize("setting", [{"stopbits": 3}, {"bytesize": 9}, {"baudrate": 0},
                                     {"parity": "M"}, {"transport": "ascii"}])
def test_a_bad_serial_setting_is_refused_naming_it(setting: dict[str, object]):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=next(iter(setting))):
        ModbusDevice(**{"loc_id": "L1", "transport": "serial", "serial_port": "/dev/ttyUSB0",
                        "register_map": default_map(), **setting})


def test_to_config_carries_every_setting():
    assert set(OTHER_VALUES) == set(DEVICE_SETTINGS)
    cfg = ModbusDevice(**OTHER_VALUES, register_map=default_map()).to_config("plc-7")
    assert dataclasses.asdict(cfg) == dataclasses.asdict(
        DeviceConfig(name="plc-7", tags=tuple(default_map()), **OTHER_VALUES))
    assert all(getattr(cfg, k) != getattr(DEVICE_DEFAULTS, k) for k in OTHER_VALUES)


def test_add_device_has_an_option_per_setting_with_its_default():
    command = typer.main.get_command(modbus_app).commands["add-device"]  # type: ignore[attr-defined]
    params = {p.name: p for p in command.params}
    assert set(DEVICE_SETTINGS) <= set(params)
    for key in DEVICE_SETTINGS:
        if key != "loc_id":
            assert params[key].default == getattr(DEVICE_DEFAULTS, key), key
    assert "--max-registers" in params["max_registers_per_request"].opts  # flag kept


def test_capture_limits_are_in_the_flow_parameter_schema():
    from flows.modbus_capture import MAX_DEVICES, modbus_capture

    props = modbus_capture.parameters.model_dump()["properties"]
    # optional since line_file can give the devices: the list's limits hold when given
    devices = next(p for p in props["devices"]["anyOf"] if p.get("type") == "array")
    assert props["line_file"]["anyOf"][0]["minLength"] == 1
    assert (devices["minItems"], devices["maxItems"]) == (1, MAX_DEVICES)
    assert devices["items"]["pattern"] == "^[a-z0-9][a-z0-9-]*$"
    assert props["samples"]["minimum"] == 1
    assert props["interval_seconds"]["minimum"] == 0


@pytest.mark.parametrize("params, field", [
    ({"devices": []}, "devices"),
    ({"devices": ["a"], "samples": 0}, "samples"),
    ({"devices": ["a"], "interval_seconds": float("inf")}, "interval_seconds"),
    ({"devices": ["a"], "target_db": "Warehouse DB"}, "target_db"),
])
def test_the_signature_refuses_out_of_bounds_values(params, field):
    from prefect.exceptions import ParameterTypeError

    from flows.modbus_capture import modbus_capture

    with pytest.raises(ParameterTypeError, match=field):
        modbus_capture.validate_parameters(params)


class TestModbusDeviceStandards(BlockStandardTestSuite):
    """Prefect's checks for a block: description, field descriptions, code example, logo."""

    @pytest.fixture
    def block(self) -> type[ModbusDevice]:
        return ModbusDevice

    def test_has_a_documentation_url(self, block: type[ModbusDevice]) -> None:
        # No site hosts this project's docs: the docstring points to the file that ships
        # with the code instead.
        assert block._documentation_url is None
        assert "docs/modbus.md" in (block.__doc__ or "")
        assert (ROOT / "docs" / "modbus.md").is_file()

    def test_has_a_valid_image(self, block: type[ModbusDevice]) -> None:
        # No logo (Prefect's suite would download it): the UI shows its default icon.
        assert block._logo_url is None and "no logo" in (block.__doc__ or "")


def test_a_maps_workarounds_are_device_settings_with_their_defaults():
    from shopfloor.modbus.device import WORKAROUNDS
    from shopfloor.modbus.tags import Workarounds

    assert set(Workarounds.model_fields) == set(WORKAROUNDS) <= set(DEVICE_SETTINGS)
    for key in WORKAROUNDS:
        assert Workarounds.model_fields[key].default == getattr(DEVICE_DEFAULTS, key), key
        assert ModbusDevice.model_fields[key].metadata == Workarounds.model_fields[key].metadata
