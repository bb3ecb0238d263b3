"""Register maps: loading from YAML/JSON, and rejections that name the tag."""

import json
from pathlib import Path

import pytest

from shopfloor.errors import ShopfloorError
from shopfloor.modbus.tags import load_register_map, parse_register_map

GOOD = [
    {"name": "air_temp", "column": "temperature", "address": 0, "data_type": "float32",
     "byte_order": "CDAB", "min_value": -20, "max_value": 80},
    {"name": "air_rh", "column": "humidity", "address": 2, "data_type": "uint16", "scale": 0.1},
    {"name": "alarm", "column": "alarm", "address": 3, "data_type": "bit", "bit": 0},
    {"name": "fan", "column": "fan", "address": 3, "data_type": "bit", "bit": 1},
]


def test_yaml_and_json_maps_load_the_same(tmp_path: Path):
    import yaml

    (tmp_path / "m.yaml").write_text(yaml.safe_dump({"tags": GOOD}))
    (tmp_path / "m.json").write_text(json.dumps(GOOD))
    from_yaml = load_register_map(tmp_path / "m.yaml")
    assert from_yaml == load_register_map(tmp_path / "m.json")
    assert [t.width for t in from_yaml] == [2, 1, 1, 1]
    assert from_yaml[0].byte_order == "CDAB" and from_yaml[1].scale == 0.1


@pytest.mark.parametrize("entries, message", [
    ([dict(GOOD[0], data_type="float128")], "tag 'air_temp' data_type"),
    ([dict(GOOD[0], data_type="string")], "tag 'air_temp': a string tag needs length"),
    ([dict(GOOD[0], address=65535)], "tag 'air_temp': address 65535 \\+ 2 registers"),
    ([dict(GOOD[0], address=70000)], "tag 'air_temp' address"),
    ([GOOD[0], dict(GOOD[1], address=1)], "tag 'air_rh' overlaps tag 'air_temp'"),
    ([GOOD[2], dict(GOOD[3], bit=0)], "tag 'fan' overlaps tag 'alarm'"),
    ([GOOD[0], dict(GOOD[1], name="air_temp")], "name 'air_temp' is already used"),
    ([GOOD[0], dict(GOOD[1], column="temperature")], "column 'temperature' is already used"),
    ([dict(GOOD[0], byte_order="AB")], "tag 'air_temp': byte_order AB is for 16-bit"),
    ([dict(GOOD[2], bit=None)], "tag 'alarm': a bool/bit tag on a register needs a bit"),
    ([dict(GOOD[1], register_type="coil")], "tag 'air_rh': a coil holds one bit"),
    ([dict(GOOD[0], min_value=90)], "tag 'air_temp': min_value 90.0 is above"),
    ([dict(GOOD[0], column="temp; drop table x")], "column of tag 'air_temp'"),
    ([dict(GOOD[0], colour="red")], "tag 'air_temp' colour"),
    ([], "register map is empty"),
])
def test_invalid_maps_are_rejected_naming_the_tag(entries, message):
    with pytest.raises(ShopfloorError, match=message):
        parse_register_map(entries)


def test_unreadable_files_are_clear_errors(tmp_path: Path):
    with pytest.raises(ShopfloorError, match="not found"):
        load_register_map(tmp_path / "missing.yaml")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ShopfloorError, match="not valid"):
        load_register_map(tmp_path / "broken.json")


def test_device_block_settings_become_a_checked_capture_config():
    from blocks.modbus import ModbusDevice

    tags = parse_register_map(GOOD)
    block = ModbusDevice(host="10.0.0.5", port=1502, unit_id=3, loc_id="L1", district="D1",
                         transport="rtu-over-tcp", max_registers_per_request=16,
                         register_map=tags)
    cfg = block.to_config("line1-plc")
    assert (cfg.name, cfg.host, cfg.port, cfg.unit_id, cfg.transport) == (
        "line1-plc", "10.0.0.5", 1502, 3, "rtu-over-tcp")
    assert cfg.tags == tuple(tags) and cfg.max_registers_per_request == 16
    with pytest.raises(ShopfloorError, match="serial needs serial_port"):
        ModbusDevice(loc_id="L1", transport="serial", register_map=tags).to_config("x")
    with pytest.raises(ShopfloorError, match="register map is empty"):
        ModbusDevice(loc_id="L1").to_config("x")


def test_a_block_saved_with_the_seeds_spelling_still_names_its_district():
    from blocks.modbus import ModbusDevice

    old = ModbusDevice.model_validate({"loc_id": "L1", "dstrct_code": "OLD",
                                       "register_map": parse_register_map(GOOD)})
    assert old.district == "OLD" and old.to_config("plc").district == "OLD"
    assert "dstrct_code" not in old.model_dump() and old.model_dump()["district"] == "OLD"
