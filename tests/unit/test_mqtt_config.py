"""The MQTT configuration file: validated by its schema, a bad value refused with its
line and key; topic filters and device templates (docs/mqtt.md)."""

from pathlib import Path

import pytest

from shopfloor.errors import UserError
from shopfloor.mqtt.config import device_name, load_config, topic_matches

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_example_is_valid() -> None:
    cfg = load_config(ROOT / "config" / "mqtt-example.yaml")
    assert cfg.broker.client_id == "shopfloor-line1"
    assert cfg.subscriptions() == ["plant/+/press/+", "spBv1.0/plant1/#"]


@pytest.mark.parametrize(("text", "expected"), [
    ("broker:\n  client_id: c\njson:\n  - topic: a/#\n    tags:\n      - name: x\n"
     "        path: x\n        data_type: float32\n",
     "line 8: json[0].tags[0].data_type: Input should be"),
    ("broker:\n  client_id: c\njson:\n  - topic: a/#/b\n    tags:\n      - name: x\n"
     "        path: x\n", "line 4: json[0].topic: an MQTT topic filter"),
    ("broker:\n  client_id: c\n  port: 0\nsparkplug:\n  - group: g\n",
     "line 3: broker.port: Input should be greater than or equal to 1"),
    ("broker:\n  client_id: c\nsparkplug:\n  - group: g\n    colour: red\n",
     "line 5: sparkplug[0].colour: Extra inputs are not permitted"),
    ("broker:\n  client_id: c\njson:\n  - topic: a\n    tags:\n      - name: x\n"
     "        path: a..b\n", "line 7: json[0].tags[0].path: a dotted path"),
    ("broker:\n  client_id: c\n", "nothing to ingest"),
    ("broker:\n  host: h\nsparkplug:\n  - group: g\n", "line 2: broker.client_id: Field required"),
])
def test_a_bad_value_is_refused_with_its_line_and_key(tmp_path: Path, text: str,
                                                       expected: str) -> None:
    path = tmp_path / "mqtt.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match="mqtt.yaml: ") as err:
        load_config(path)
    assert expected in str(err.value)


@pytest.mark.parametrize(("pattern", "topic", "match"), [
    ("a/+/c", "a/b/c", True), ("a/+/c", "a/b/d", False), ("a/#", "a", True),
    ("a/#", "a/b/c", True), ("a/+", "a/b/c", False), ("#", "x/y", True),
    ("a/b", "a/b", True), ("a/b", "a/b/c", False), ("+/+", "a/b", True),
])
def test_topic_filters_match_as_mqtt_says(pattern: str, topic: str, match: bool) -> None:
    assert topic_matches(pattern, topic) is match


def test_device_templates_take_the_topic_or_its_levels() -> None:
    assert device_name("{topic}", "plant/l1/press/7") == "plant/l1/press/7"
    assert device_name("press-{4}@{2}", "plant/l1/press/7") == "press-7@l1"
    assert device_name("x{9}", "a/b") == "x"
