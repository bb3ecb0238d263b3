"""The tag spec: one entry of a device's register map, and loading/validating whole maps.

Addresses are 0-based protocol addresses (what goes on the wire). A manual that lists
1-based "register numbers" (40001 = first holding register, 30001 = first input
register, 00001 = first coil, 10001 = first discrete input) maps to
``address = number - base`` with base 40001 / 30001 / 1 / 10001; see docs/modbus.md.
"""

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shopfloor.errors import ShopfloorError, UserError
from shopfloor.identifiers import check_identifier

RegisterType = Literal["coil", "discrete", "holding", "input"]
DataType = Literal[
    "bool", "bit", "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float32", "float64", "string",
]
ByteOrder = Literal["ABCD", "DCBA", "BADC", "CDAB", "AB", "BA"]

BIT_REGISTER_TYPES = ("coil", "discrete")
MAX_ADDRESS = 65535
REGISTERS_PER_TYPE = {
    "bool": 1, "bit": 1, "int16": 1, "uint16": 1, "int32": 2, "uint32": 2,
    "int64": 4, "uint64": 4, "float32": 2, "float64": 4,
}


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
    bit: int | None = Field(default=None, ge=0, le=15, description="Bit index for bit tags")
    length: int | None = Field(default=None, ge=1, le=125, description="Registers, for strings")
    scale: float = 1.0
    offset: float = 0.0
    min_value: float | None = Field(default=None, description="Lowest valid value")
    max_value: float | None = Field(default=None, description="Highest valid value")

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
    wide = tag.data_type not in ("int16", "uint16", "bool", "bit", "string")
    if wide and tag.byte_order in ("AB", "BA"):
        return f"byte_order {tag.byte_order} is for 16-bit values; use ABCD, DCBA, BADC or CDAB"
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
    return _order_problem(tag)


def _pair_conflict(a: TagSpec, b: TagSpec) -> bool:
    if a.register_type != b.register_type or a.address >= b.end or b.address >= a.end:
        return False
    both_bits = a.bit is not None and b.bit is not None
    return not both_bits or a.bit == b.bit


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


def _error_text(err: ValidationError, name: str) -> str:
    parts = []
    for e in err.errors():
        field = ".".join(str(x) for x in e.get("loc", ())) or "tag"
        msg = e.get("msg", "").removeprefix("Value error, ")
        parts.append(msg if msg.startswith("tag ") else f"tag {name!r} {field}: {msg}")
    return "; ".join(parts)


def parse_register_map(entries: Any) -> list[TagSpec]:
    """Tags from plain data (a list of mappings, or ``{"tags": [...]}``), validated."""
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
            text = _error_text(err, str(name))
            raise UserError(f"invalid register map: {text}") from None
    return validate_register_map(tags)


def load_register_map(path: str | Path) -> list[TagSpec]:
    """Read a register map from a ``.yaml``/``.yml`` or ``.json`` file."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"register map file not found: {p.name}")
    text = p.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"register map {p.name} is not valid: {exc}") from None
    return parse_register_map(data)
