"""The MQTT ingestion's configuration file: the broker, JSON topics mapped to tags, and
the Sparkplug B groups to follow (docs/mqtt.md).

A refused value is named with its line and key, as for the register maps, e.g.
``plant.yaml: line 12: json[0].tags[1].data_type: Input should be 'float64', ...``.
"""

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shopfloor.errors import UserError

DataType = Literal["float64", "int64", "bool", "string"]
# A topic level of a filter: no '#' or '+' except as a whole level.
_LEVEL = re.compile(r"^(\+|#|[^+#]*)$")
_PATH = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")
_DEVICE_FIELD = re.compile(r"\{(topic|\d+)\}")
SPARKPLUG_NAMESPACE = "spBv1.0"
DEFAULT_SESSION_EXPIRY_SECONDS = 7 * 24 * 3600


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Broker(_Strict):
    """Where to connect, and the persistent session that keeps what arrives while the
    collector is away."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str = Field(min_length=1, max_length=128, description="Fixed: it names the "
                           "broker's session, which holds messages while the collector is away")
    username: str | None = None
    password_env: str | None = Field(default=None, description="Environment variable "
                                     "holding the password (never the password itself)")
    session_expiry_seconds: int = Field(default=DEFAULT_SESSION_EXPIRY_SECONDS, ge=60,
                                        le=2**32 - 2)
    keepalive_seconds: int = Field(default=30, ge=5, le=3600)


class JsonTag(_Strict):
    """One value of a JSON message."""

    name: str = Field(min_length=1, max_length=128)
    path: str = Field(description="Dotted path into the message, e.g. data.pressure")
    data_type: DataType = "float64"
    unit: str | None = Field(default=None, max_length=32)
    description: str | None = None
    min_value: float | None = None
    max_value: float | None = None

    @field_validator("path")
    @classmethod
    def _dotted(cls, v: str) -> str:
        if not _PATH.match(v):
            raise ValueError("a dotted path of keys (or list indexes), e.g. data.pressure")
        return v


class JsonTopic(_Strict):
    """Messages on topics matching ``topic`` (MQTT wildcards ``+`` and ``#``)."""

    topic: str = Field(min_length=1)
    device: str = Field(default="{topic}", max_length=128, description="The registry's "
                        "device: {topic} (the message's topic) or {N}, the topic's N-th level")
    location: str | None = Field(default=None, max_length=32)
    timestamp: str | None = Field(default=None, description="Dotted path of the message's "
                                  "time: epoch seconds or milliseconds, or ISO 8601; "
                                  "default: when it was received")
    tags: list[JsonTag] = Field(min_length=1)

    @field_validator("topic")
    @classmethod
    def _filter(cls, v: str) -> str:
        levels = v.split("/")
        if any(not _LEVEL.match(level) for level in levels) or "#" in levels[:-1]:
            raise ValueError("an MQTT topic filter: '+' and '#' only as whole levels, "
                             "'#' only last")
        if v.startswith(SPARKPLUG_NAMESPACE + "/"):
            raise ValueError(f"{SPARKPLUG_NAMESPACE} topics are Sparkplug B: list their "
                             "group under sparkplug")
        return v

    @field_validator("tags")
    @classmethod
    def _distinct(cls, v: list[JsonTag]) -> list[JsonTag]:
        names = [t.name for t in v]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"tag names must differ within a topic: {', '.join(twice)}")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("a device name or template such as {topic} or {2}")
        return v

    @field_validator("timestamp")
    @classmethod
    def _timestamp(cls, v: str | None) -> str | None:
        if v is not None and not _PATH.match(v):
            raise ValueError("a dotted path of keys, e.g. ts or meta.time")
        return v


class SparkplugGroup(_Strict):
    """The edge nodes of one Sparkplug B group (``spBv1.0/<group>/...``)."""

    group: str = Field(min_length=1, max_length=64)
    location: str | None = Field(default=None, max_length=32)
    rebirth_on_gap: bool = Field(default=True, description="Ask the node for a rebirth "
                                 "(NCMD Node Control/Rebirth) on a sequence gap or an "
                                 "unknown alias")

    @field_validator("group")
    @classmethod
    def _plain(cls, v: str) -> str:
        if any(c in v for c in "/+#"):
            raise ValueError("a group id: no '/', '+' or '#'")
        return v


class MqttConfig(_Strict):
    """The whole file."""

    broker: Broker
    json_topics: list[JsonTopic] = Field(default_factory=list, alias="json")
    sparkplug: list[SparkplugGroup] = Field(default_factory=list)

    def subscriptions(self) -> list[str]:
        """The topic filters to subscribe to, each once."""
        subs = [t.topic for t in self.json_topics]
        subs += [f"{SPARKPLUG_NAMESPACE}/{g.group}/#" for g in self.sparkplug]
        return list(dict.fromkeys(subs))


def topic_matches(pattern: str, topic: str) -> bool:
    """Whether ``topic`` matches the MQTT filter ``pattern`` (``+`` one level, ``#`` the
    rest, also none)."""
    p, t = pattern.split("/"), topic.split("/")
    for i, level in enumerate(p):
        if level == "#":
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(p) == len(t)


def device_name(template: str, topic: str) -> str:
    """The registry's device for a message on ``topic`` (``{topic}``, ``{N}``: level N,
    1-based; a level the topic lacks is empty)."""
    levels = topic.split("/")

    def field(m: re.Match) -> str:
        key = m.group(1)
        if key == "topic":
            return topic
        n = int(key)
        return levels[n - 1] if 0 < n <= len(levels) else ""
    return _DEVICE_FIELD.sub(field, template)


# ---------------------------------------------------------------- loading, with lines

def _node_at(root: yaml.Node | None, loc: tuple) -> yaml.Node | None:
    """The YAML node at a pydantic error location (best effort)."""
    node = root
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if getattr(k, "value", None) == str(key)),
                        None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) \
                and key < len(node.value):
            node = node.value[key]
        else:
            return node
    return node


def _key_line(root: yaml.Node | None, loc: tuple) -> int | None:
    """The line of the key at ``loc`` (its value's line when it is a list item, its
    mapping's first line when it is missing)."""
    if not loc:
        return None
    parent = _node_at(root, loc[:-1])
    if isinstance(parent, yaml.MappingNode):
        for k, _v in parent.value:
            if getattr(k, "value", None) == str(loc[-1]):
                return k.start_mark.line + 1
        return parent.start_mark.line + 1  # a missing key: where its mapping starts
    node = _node_at(root, loc)
    return None if node is None else node.start_mark.line + 1


def _where(loc: tuple) -> str:
    out = ""
    for key in loc:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def parse_config(data: Any, root: yaml.Node | None = None, name: str = "config") -> MqttConfig:
    """A validated configuration from plain data; ``root`` (the YAML node tree) puts the
    line in front of each refused key."""
    if not isinstance(data, dict):
        raise UserError(f"{name}: an MQTT configuration is a mapping with broker, json "
                        "and sparkplug")
    try:
        config = MqttConfig.model_validate(data)
    except ValidationError as err:
        parts = []
        for e in err.errors():
            loc = tuple(e.get("loc", ()))
            line = _key_line(root, loc)
            msg = e.get("msg", "").removeprefix("Value error, ")
            parts.append(f"{f'line {line}: ' if line else ''}{_where(loc) or 'config'}: {msg}")
        raise UserError(f"{name}: invalid MQTT configuration: " + "; ".join(parts)) from None
    if not config.json_topics and not config.sparkplug:
        raise UserError(f"{name}: invalid MQTT configuration: nothing to ingest "
                        "(no json topics, no sparkplug groups)")
    return config


def load_config(path: str | Path) -> MqttConfig:
    """Read and validate a YAML (or JSON, a subset of YAML) configuration file."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"MQTT configuration file not found: {p}")
    text = p.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise UserError(f"{p.name} is not valid YAML: {exc}") from None
    return parse_config(data, root, p.name)
