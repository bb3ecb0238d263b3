"""The tag spec: one entry of a device's register map, and loading/validating whole maps.

Addresses are 0-based protocol addresses (what goes on the wire). A manual that lists
1-based "register numbers" (40001 = first holding register, 30001 = first input
register, 00001 = first coil, 10001 = first discrete input) maps to
``address = number - base`` with base 40001 / 30001 / 1 / 10001; see docs/modbus.md.
"""

import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shopfloor.errors import ShopfloorError, UserError
from shopfloor.identifiers import check_identifier
from shopfloor.modbus.device import DEVICE_DEFAULTS, MAX_PAUSE_SECONDS

RegisterType = Literal["coil", "discrete", "holding", "input"]
DataType = Literal[
    "bool", "bit", "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float16", "float32", "float64", "string",
    "int8l", "int8h", "uint8l", "uint8h", "bitfield",
]
StringLocation = Literal["both", "lower", "upper"]
ByteOrder = Literal["ABCD", "DCBA", "BADC", "CDAB", "AB", "BA"]

BIT_REGISTER_TYPES = ("coil", "discrete")
MAX_ADDRESS = 65535
REGISTERS_PER_TYPE = {
    "bool": 1, "bit": 1, "int16": 1, "uint16": 1, "int32": 2, "uint32": 2,
    "int64": 4, "uint64": 4, "float16": 1, "float32": 2, "float64": 4,
    "int8l": 1, "int8h": 1, "uint8l": 1, "uint8h": 1, "bitfield": 1,
}
# Types that take part of one register: (first bit, bits) inside it, 0 = least significant.
BYTE_TYPES = {"int8l": (0, 8), "int8h": (8, 8), "uint8l": (0, 8), "uint8h": (8, 8)}
SIXTEEN_BIT_TYPES = ("int16", "uint16", "float16", "bool", "bit", "string", "bitfield",
                     *BYTE_TYPES)


class TagSpec(BaseModel):
    """One value read from a device and the column it lands in."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Tag name, unique within the device")
    column: str = Field(description="Target column, e.g. temperature, humidity, pcv_temperature")
    unit: str | None = Field(default=None, max_length=32, description="Engineering unit")
    description: str | None = Field(default=None, description="What the tag measures")
    register_type: RegisterType = Field(default="holding", description="Register type")
    address: int = Field(ge=0, le=MAX_ADDRESS, description="0-based protocol address")
    data_type: DataType = Field(default="int16")
    byte_order: ByteOrder = Field(default="ABCD", description="Byte/word order")
    bit: int | None = Field(default=None, ge=0, le=15,
                            description="Bit index for bit tags; lowest bit of a bitfield")
    bit_count: int | None = Field(default=None, ge=2, le=16,
                                  description="Bits of a bitfield (2..16)")
    string_register_location: StringLocation = Field(
        default="both", description="Where a string's characters sit in each register "
        "(after byte_order): both bytes, or one character in the lower or upper byte")
    length: int | None = Field(default=None, ge=1, le=125, description="Registers, for strings")
    scale: float = 1.0
    offset: float = 0.0
    min_value: float | None = Field(default=None, description="Lowest valid value")
    max_value: float | None = Field(default=None, description="Highest valid value")
    stale_after: int | None = Field(
        default=None, ge=1, le=1_000_000,
        description="Readings a number may stay unchanged before its points are "
        "uncertain (reason stale); default: never (docs/tags.md)")

    @model_validator(mode="after")
    def _consistent(self) -> "TagSpec":
        problem = _tag_problem(self)
        if problem:
            raise ValueError(f"tag {self.name!r}: {problem}")
        return self

    @property
    def is_bit(self) -> bool:
        return self.data_type in ("bool", "bit")

    @property
    def bit_span(self) -> tuple[int, int] | None:
        """``(first bit, bits)`` a sub-register tag takes of its register, else None."""
        if self.data_type in BYTE_TYPES:
            return BYTE_TYPES[self.data_type]
        if self.data_type == "bitfield":
            return (self.bit or 0, self.bit_count or 0)
        if self.is_bit and self.register_type not in BIT_REGISTER_TYPES:
            return (self.bit or 0, 1)
        return None

    @property
    def is_numeric(self) -> bool:
        return self.data_type != "string"

    @property
    def width(self) -> int:
        """Registers (or bits, for coils and discrete inputs) this tag occupies."""
        if self.register_type in BIT_REGISTER_TYPES:
            return 1
        if self.data_type == "string":
            return self.length or 0
        return REGISTERS_PER_TYPE[self.data_type]

    @property
    def end(self) -> int:
        """First address after this tag."""
        return self.address + self.width


def _order_problem(tag: TagSpec) -> str | None:
    wide = tag.data_type not in SIXTEEN_BIT_TYPES
    if wide and tag.byte_order in ("AB", "BA"):
        return f"byte_order {tag.byte_order} is for 16-bit values; use ABCD, DCBA, BADC or CDAB"
    return None


def _sub_register_problem(tag: TagSpec) -> str | None:
    if tag.data_type == "bitfield":
        if tag.bit is None or tag.bit_count is None:
            return "a bitfield needs bit (its lowest bit) and bit_count (2..16)"
        if tag.bit + tag.bit_count > 16:
            return f"bit {tag.bit} + bit_count {tag.bit_count} runs past bit 15"
    elif tag.bit_count is not None:
        return "bit_count is only for bitfield tags"
    if tag.data_type in BYTE_TYPES and tag.bit is not None:
        return f"{tag.data_type} is a whole byte: no bit index"
    if tag.string_register_location != "both" and tag.data_type != "string":
        return "string_register_location is only for string tags"
    return None


def _tag_problem(tag: TagSpec) -> str | None:  # noqa: C901 - a flat list of rules
    if not tag.name:
        return "name is empty"
    if tag.register_type in BIT_REGISTER_TYPES and not tag.is_bit:
        return f"a {tag.register_type} holds one bit: data_type must be bool, not {tag.data_type}"
    if tag.register_type in BIT_REGISTER_TYPES and tag.bit is not None:
        return f"bit index is only for holding/input registers, not {tag.register_type}"
    if tag.register_type not in BIT_REGISTER_TYPES and tag.is_bit and tag.bit is None:
        return "a bool/bit tag on a register needs a bit index (0 = least significant)"
    problem = _sub_register_problem(tag)
    if problem:
        return problem
    if tag.data_type == "string" and tag.length is None:
        return "a string tag needs length (in registers)"
    if tag.data_type != "string" and tag.length is not None:
        return "length is only for string tags"
    if tag.end - 1 > MAX_ADDRESS:
        return f"address {tag.address} + {tag.width} registers runs past {MAX_ADDRESS}"
    if tag.min_value is not None and tag.max_value is not None and tag.min_value > tag.max_value:
        return f"min_value {tag.min_value} is above max_value {tag.max_value}"
    if tag.scale == 0:
        return "scale must not be 0"
    if tag.stale_after is not None and not tag.is_numeric:
        return "stale_after is for numbers, not string tags"
    return _order_problem(tag)


class Workarounds(BaseModel):
    """The ``workarounds:`` section of a map file: device settings (same names and
    defaults as :class:`~shopfloor.modbus.device.DeviceConfig`) for a fussy device."""

    model_config = ConfigDict(extra="forbid")

    pause_after_connect_seconds: float = Field(
        default=DEVICE_DEFAULTS.pause_after_connect_seconds, ge=0, le=MAX_PAUSE_SECONDS)
    pause_between_requests_seconds: float = Field(
        default=DEVICE_DEFAULTS.pause_between_requests_seconds, ge=0, le=MAX_PAUSE_SECONDS)
    close_connection_after_poll: bool = DEVICE_DEFAULTS.close_connection_after_poll
    one_request_per_tag: bool = DEVICE_DEFAULTS.one_request_per_tag
    read_coils_starting_at_zero: bool = DEVICE_DEFAULTS.read_coils_starting_at_zero


def _pair_conflict(a: TagSpec, b: TagSpec) -> bool:
    if a.register_type != b.register_type or a.address >= b.end or b.address >= a.end:
        return False
    span_a, span_b = a.bit_span, b.bit_span
    if span_a is None or span_b is None or a.address != b.address:
        return True
    # two parts of one register (bits, bytes, bitfields) clash only where they share bits
    return span_a[0] < span_b[0] + span_b[1] and span_b[0] < span_a[0] + span_a[1]


def _overlaps(tags: list[TagSpec]) -> list[str]:
    by_type: dict[str, list[TagSpec]] = defaultdict(list)
    for t in tags:
        by_type[t.register_type].append(t)
    problems = []
    for group in by_type.values():
        group.sort(key=lambda t: (t.address, t.bit or 0))
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                if b.address >= a.end:
                    break
                if _pair_conflict(a, b):
                    problems.append(f"tag {b.name!r} overlaps tag {a.name!r} "
                                    f"({a.register_type} {b.address})")
    return problems


def _duplicates(tags: list[TagSpec], attr: str) -> list[str]:
    seen: dict[str, str] = {}
    problems = []
    for t in tags:
        value = getattr(t, attr)
        if value in seen:
            problems.append(f"tag {t.name!r}: {attr} {value!r} is already used by tag "
                            f"{seen[value]!r}")
        seen.setdefault(value, t.name)
    return problems


def validate_register_map(tags: list[TagSpec]) -> list[TagSpec]:
    """Check a whole map: unique names and columns, safe column names, no overlapping tags.

    Raises:
        ShopfloorError: naming every offending tag.
    """
    if not tags:
        raise UserError("register map is empty: add at least one tag")
    problems = _duplicates(tags, "name") + _duplicates(tags, "column") + _overlaps(tags)
    for t in tags:
        try:
            check_identifier(t.column, f"column of tag {t.name!r}")
        except ShopfloorError as exc:
            problems.append(str(exc))
    if problems:
        raise UserError("invalid register map: " + "; ".join(problems))
    return tags


Lines = Callable[[int, str | None], int | None]
"""Where a tag's entry (key None) or one of its keys starts in the map file (1-based)."""


def _error_text(err: ValidationError, name: str, index: int, lines: Lines | None) -> str:
    parts = []
    for e in err.errors():
        loc = e.get("loc", ())
        field = ".".join(str(x) for x in loc) or "tag"
        msg = e.get("msg", "").removeprefix("Value error, ")
        text = msg if msg.startswith("tag ") else f"tag {name!r} {field}: {msg}"
        line = lines(index, str(loc[0]) if loc else None) if lines else None
        parts.append(f"line {line}: {text}" if line else text)
    return "; ".join(parts)


def parse_register_map(entries: Any, lines: Lines | None = None) -> list[TagSpec]:
    """Tags from plain data (a list of mappings, or ``{"tags": [...]}``), validated.

    ``lines`` (from :func:`load_register_map`) puts the file's line in front of a
    refused entry or key.
    """
    if isinstance(entries, dict) and "tags" in entries:
        entries = entries["tags"]
    if not isinstance(entries, list):
        raise UserError("register map must be a list of tags (or a mapping with 'tags')")
    tags = []
    for i, entry in enumerate(entries):
        try:
            tags.append(TagSpec.model_validate(entry))
        except ValidationError as err:
            name = entry.get("name", f"#{i}") if isinstance(entry, dict) else f"#{i}"
            text = _error_text(err, str(name), i, lines)
            raise UserError(f"invalid register map: {text}") from None
    return validate_register_map(tags)


def _yaml_root(text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None


def _key_line(node: yaml.Node | None, key: str | None) -> int | None:
    if key is not None and isinstance(node, yaml.MappingNode):
        for k, _v in node.value:
            if getattr(k, "value", None) == key:
                return k.start_mark.line + 1
    return None if node is None else node.start_mark.line + 1


def _section(root: yaml.Node | None, name: str) -> yaml.Node | None:
    if isinstance(root, yaml.MappingNode):
        return next((v for k, v in root.value if getattr(k, "value", None) == name), None)
    return None


def _yaml_lines(root: yaml.Node | None) -> Lines:
    """Line numbers of each tag entry and its keys in a YAML map (best effort)."""
    seq = root if isinstance(root, yaml.SequenceNode) else _section(root, "tags")
    entries = seq.value if isinstance(seq, yaml.SequenceNode) else []

    def where(index: int, key: str | None) -> int | None:
        return _key_line(entries[index], key) if index < len(entries) else None
    return where


def parse_workarounds(data: Any, root: yaml.Node | None = None) -> dict[str, Any]:
    """The settings of a map's ``workarounds:`` section (only those it sets).

    Raises:
        UserError: an unknown key or a bad value, with its line when ``root`` (the YAML
            node tree) is given.
    """
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError("invalid register map: workarounds must be a mapping of settings")
    try:
        checked = Workarounds.model_validate(data)
    except ValidationError as err:
        section = _section(root, "workarounds")
        parts = []
        for e in err.errors():
            key = str(e["loc"][0]) if e.get("loc") else None
            line = _key_line(section, key) if section is not None else None
            where = f"line {line}: " if line else ""
            parts.append(f"{where}workarounds {key}: {e.get('msg', '')}")
        raise UserError("invalid register map: " + "; ".join(parts)) from None
    return checked.model_dump(include=set(data))


def load_device_map(path: str | Path) -> tuple[list[TagSpec], dict[str, Any]]:
    """A map file's tags and its ``workarounds:`` settings (``.yaml``/``.yml``/``.json``).

    A refused YAML entry is named with its line and key, e.g. ``line 12: tag 'x'
    data_type: ...``.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"register map file not found: {p.name}")
    text = p.read_text(encoding="utf-8")
    is_json = p.suffix.lower() == ".json"
    try:
        data = json.loads(text) if is_json else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"register map {p.name} is not valid: {exc}") from None
    root = None if is_json else _yaml_root(text)
    try:
        if isinstance(data, dict) and set(data) - {"tags", "workarounds"}:
            extra = ", ".join(sorted(map(str, set(data) - {"tags", "workarounds"})))
            raise UserError(f"invalid register map: unknown section {extra} "
                            "(a map holds tags and workarounds)")
        workarounds = parse_workarounds(data.get("workarounds") if isinstance(data, dict)
                                        else None, root)
        return parse_register_map(data, None if is_json else _yaml_lines(root)), workarounds
    except UserError as exc:
        raise UserError(f"{p.name}: {exc}") from None


def load_register_map(path: str | Path) -> list[TagSpec]:
    """Read a register map's tags from a ``.yaml``/``.yml`` or ``.json`` file."""
    return load_device_map(path)[0]
