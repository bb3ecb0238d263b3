"""The register maps shipped in maps/ load, and the simulator's one is its default map."""

import re
from pathlib import Path

import pytest
import yaml

from shopfloor.modbus.simulator import default_map
from shopfloor.modbus.tags import load_register_map, parse_register_map

ROOT = Path(__file__).resolve().parents[2]
MAPS = sorted((ROOT / "maps").glob("*.yaml"))


def test_maps_are_shipped():
    assert {p.name for p in MAPS} >= {"simulator.yaml", "example-plc.yaml"}


@pytest.mark.parametrize("path", MAPS, ids=lambda p: p.name)
def test_every_shipped_map_is_valid(path: Path):
    assert load_register_map(path)


def test_simulator_map_is_what_the_simulator_serves():
    assert load_register_map(ROOT / "maps" / "simulator.yaml") == default_map()


def test_the_docs_example_map_is_the_shipped_one():
    text = (ROOT / "docs" / "modbus.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    maps = [parse_register_map(b) for b in blocks if isinstance(b, dict) and "tags" in b]
    assert maps == [load_register_map(ROOT / "maps" / "example-plc.yaml")]
    assert "maps/simulator.yaml" in text
