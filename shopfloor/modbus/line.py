"""A line file: a line's worth of Modbus devices, their maps and gateways, in one YAML.

``modbus-capture`` reads it at the start of every run (``line_file=``), so an edited
file is picked up by the next run. Format (docs/modbus.md, "Line file"):

.. code-block:: yaml

    defaults:                 # applied to every device; a device's own key wins
      district: D7
      timeout_seconds: 1.0
    gateways:                 # host:port -> settings of the devices behind it
      "10.0.0.5:502": {concurrency: 1, pause_between_requests_seconds: 0.05}
    devices:
      - {name: press-1, host: 10.0.0.5, unit_id: 1, loc_id: L001, map: maps/press.yaml}
      - {name: oven-2, host: 10.0.0.6, loc_id: L002, tags: [...]}

A setting comes, last one winning, from DeviceConfig's default, ``defaults:``, the
device's gateway, its map file's ``workarounds:``, then the device's own keys. An error
names the file, the line and the key (the map's YAML error machinery, ``tags.py``).
No prefect import: the CLI's ``check-line`` and the flow share it.
"""

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shopfloor.errors import UserError
from shopfloor.modbus.device import (
    DEVICE_DEFAULTS,
    DEVICE_SETTINGS,
    MAX_BITS,
    MAX_PAUSE_SECONDS,
    MAX_REGISTERS,
    DeviceConfig,
    Parity,
    Transport,
)
from shopfloor.modbus.gateway import gateway_key
from shopfloor.modbus.planning import plan_requests
from shopfloor.modbus.tags import (
    _key_line,
    _section,
    _yaml_lines,
    _yaml_root,
    load_device_map,
    parse_register_map,
)
from shopfloor.params import BLOCK_NAME_PATTERN
from shopfloor.settings import shopfloor_home

_D = DEVICE_DEFAULTS
SECTIONS = ("defaults", "gateways", "devices")
GATEWAY_PATTERN = re.compile(r"^[^\s:]+:\d{1,5}$")
MAX_CONCURRENCY = 16


class DeviceSettings(BaseModel):
    """The settings a line file may give a device (or ``defaults:``), with the limits of
    the ModbusDevice block; None: not set here."""

    model_config = ConfigDict(extra="forbid")

    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    unit_id: int | None = Field(default=None, ge=0, le=255)
    transport: Transport | None = None
    serial_port: str | None = None
    baudrate: int | None = Field(default=None, ge=1)
    parity: Parity | None = None
    stopbits: int | None = Field(default=None, ge=1, le=2)
    bytesize: int | None = Field(default=None, ge=5, le=8)
    timeout_seconds: float | None = Field(default=None, gt=0)
    retries: int | None = Field(default=None, ge=0, le=10)
    backoff_seconds: float | None = Field(default=None, ge=0)
    loc_id: str | None = Field(default=None, min_length=1)
    district: str | None = None
    max_registers_per_request: int | None = Field(default=None, ge=1, le=MAX_REGISTERS)
    max_bits_per_request: int | None = Field(default=None, ge=1, le=MAX_BITS)
    max_gap_registers: int | None = Field(default=None, ge=0)
    pause_after_connect_seconds: float | None = Field(default=None, ge=0,
                                                      le=MAX_PAUSE_SECONDS)
    pause_between_requests_seconds: float | None = Field(default=None, ge=0,
                                                         le=MAX_PAUSE_SECONDS)
    close_connection_after_poll: bool | None = None
    one_request_per_tag: bool | None = None
    read_coils_starting_at_zero: bool | None = None


class DeviceEntry(DeviceSettings):
    """One entry of ``devices:``: its name, settings, and a map file or inline tags."""

    name: str = Field(pattern=BLOCK_NAME_PATTERN)
    map: str | None = None
    tags: list[Any] | None = None


class GatewaySpec(BaseModel):
    """One entry of ``gateways:``: polls at once through it (this process) and the
    settings of every device behind it."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int = Field(default=1, ge=1, le=MAX_CONCURRENCY)
    pause_after_connect_seconds: float | None = Field(default=None, ge=0,
                                                      le=MAX_PAUSE_SECONDS)
    pause_between_requests_seconds: float | None = Field(default=None, ge=0,
                                                         le=MAX_PAUSE_SECONDS)
    close_connection_after_poll: bool | None = None
    timeout_seconds: float | None = Field(default=None, gt=0)

    def settings(self) -> dict[str, Any]:
        """The device settings it sets (not ``concurrency``)."""
        return {k: v for k, v in self.model_dump(exclude={"concurrency"}).items()
                if v is not None}


@dataclass(frozen=True)
class Line:
    """A loaded line file: its devices, gateways (by ``host:port``) and content hash
    (the file and every map file it names)."""

    devices: list[DeviceConfig]
    gateways: dict[str, GatewaySpec]
    digest: str

    def gateway_limits(self) -> dict[str, int]:
        """Polls at once per gateway key, where the file says so."""
        return {key: g.concurrency for key, g in self.gateways.items()}


@dataclass
class Changes:
    """What differs from the last run's line (by device name)."""

    first: bool = False
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.first:
            return "first run with this line file"
        parts = [f"{what} {', '.join(names)}" for what, names in
                 (("added", self.added), ("removed", self.removed),
                  ("changed", self.changed)) if names]
        return "; ".join(parts) if parts else "no device changed"


class _Where:
    """Puts ``<file>: line N:`` in front of a message about a key of the YAML."""

    def __init__(self, path: Path, root: yaml.Node | None):
        self.path, self.root = path, root

    def fail(self, message: str, node: yaml.Node | None = None,
             key: str | None = None) -> UserError:
        line = _key_line(node, key) if node is not None else None
        return UserError(f"{self.path.name}: " + (f"line {line}: " if line else "") + message)

    def entry(self, section: str, index: int) -> yaml.Node | None:
        seq = _section(self.root, section)
        if isinstance(seq, yaml.SequenceNode) and index < len(seq.value):
            return seq.value[index]
        return None


def _first_error(err: ValidationError) -> tuple[str | None, str]:
    e = err.errors()[0]
    loc = e.get("loc", ())
    return (str(loc[0]) if loc else None), e.get("msg", "").removeprefix("Value error, ")


def _read(path: Path) -> tuple[bytes, Any, yaml.Node | None]:
    if not path.is_file():
        raise UserError(f"line file not found: {path}")
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"{path.name}: not valid YAML: {' '.join(str(exc).split())}") from None
    return raw, data, _yaml_root(raw.decode("utf-8"))


def _defaults(data: dict[str, Any], where: _Where) -> dict[str, Any]:
    node = _section(where.root, "defaults")
    raw = data.get("defaults") or {}
    if not isinstance(raw, dict):
        raise where.fail("defaults must be a mapping of device settings", node)
    try:
        checked = DeviceSettings.model_validate(raw)
    except ValidationError as err:
        key, msg = _first_error(err)
        raise where.fail(f"defaults {key}: {msg}", node, key) from None
    return checked.model_dump(exclude_none=True)


def _gateways(data: dict[str, Any], where: _Where) -> dict[str, GatewaySpec]:
    node = _section(where.root, "gateways")
    raw = data.get("gateways") or {}
    if not isinstance(raw, dict):
        raise where.fail("gateways must be a mapping of host:port to settings", node)
    out = {}
    for key, value in raw.items():
        text = str(key)
        if not GATEWAY_PATTERN.match(text):
            raise where.fail(f"gateway {text!r}: write it as host:port", node, text)
        host, port = text.rsplit(":", 1)
        try:
            spec = GatewaySpec.model_validate(value or {})
        except ValidationError as err:
            field_name, msg = _first_error(err)
            raise where.fail(f"gateway {text} {field_name}: {msg}",
                             _section(node, text) or node, field_name or text) from None
        out[f"{host.lower()}:{int(port)}"] = spec
    return out


def _tags(entry: DeviceEntry, node: yaml.Node | None, where: _Where,
          base: Path) -> tuple[list[Any], dict[str, Any], bytes]:
    """The device's tags, its map's workarounds and the map file's bytes (for the hash)."""
    if (entry.map is None) == (entry.tags is None):
        raise where.fail(f"device {entry.name!r}: give map (a file) or tags (inline), "
                         "one of them", node, "map" if entry.map else "name")
    if entry.tags is not None:
        try:
            return parse_register_map(entry.tags, _yaml_lines(node)), {}, b""
        except UserError as exc:  # its message already holds the line of the tag
            raise UserError(f"{where.path.name}: device {entry.name!r}: {exc}") from None
    path = base / entry.map if entry.map else base
    if not path.is_file():
        raise where.fail(f"device {entry.name!r} map: file not found: {entry.map}",
                         node, "map")
    try:
        tags, workarounds = load_device_map(path)
    except UserError as exc:
        raise UserError(f"{where.path.name}: device {entry.name!r} map: {exc}") from None
    return tags, workarounds, path.read_bytes()


def _device(raw: Any, index: int, ctx: tuple[dict[str, Any], dict[str, GatewaySpec]],
            where: _Where, base: Path) -> tuple[DeviceConfig, bytes]:
    defaults, gateways = ctx
    node = where.entry("devices", index)
    if not isinstance(raw, dict):
        raise where.fail(f"device #{index + 1}: must be a mapping of settings", node)
    name = str(raw.get("name", f"#{index + 1}"))
    try:
        entry = DeviceEntry.model_validate(raw)
    except ValidationError as err:
        key, msg = _first_error(err)
        raise where.fail(f"device {name!r} {key}: {msg}", node, key) from None
    tags, workarounds, map_bytes = _tags(entry, node, where, base)
    own = entry.model_dump(exclude_none=True, exclude={"name", "map", "tags"})
    merged = {k: getattr(_D, k) for k in DEVICE_SETTINGS} | defaults
    gateway = gateways.get(gateway_key(DeviceConfig(name="", tags=(), **merged | own)))
    settings = merged | (gateway.settings() if gateway else {}) | workarounds | own
    cfg = DeviceConfig(name=entry.name, tags=tuple(tags), **settings)
    if not cfg.loc_id:
        raise where.fail(f"device {entry.name!r}: loc_id is missing (here or in defaults)",
                         node, "name")
    if cfg.transport == "serial" and not cfg.serial_port:
        raise where.fail(f"device {entry.name!r}: transport serial needs serial_port",
                         node, "transport")
    try:
        plan_requests(cfg.tags, cfg.max_registers_per_request, cfg.max_gap_registers,
                      cfg.max_bits_per_request, one_per_tag=cfg.one_request_per_tag,
                      coils_from_zero=cfg.read_coils_starting_at_zero)
    except UserError as exc:
        raise where.fail(f"device {entry.name!r}: {exc}", node, "name") from None
    return cfg, map_bytes


def load_line(path: str | Path) -> Line:
    """Read and check a line file; map paths are relative to the file's folder.

    Raises:
        UserError: the first problem, as ``<file>: line N: <what> <key>: <why>``.
    """
    p = Path(path)
    raw, data, root = _read(p)
    where = _Where(p, root)
    if not isinstance(data, dict):
        raise where.fail("a line file is a mapping with devices (and defaults, gateways)")
    unknown = sorted(map(str, set(data) - set(SECTIONS)))
    if unknown:
        raise where.fail(f"unknown section {unknown[0]} (a line file holds "
                         f"{', '.join(SECTIONS)})", root, unknown[0])
    ctx = (_defaults(data, where), _gateways(data, where))
    entries = data.get("devices")
    if not isinstance(entries, list) or not entries:
        raise where.fail("devices must be a list of at least one device", root, "devices")
    digest = hashlib.sha256(raw)
    devices: list[DeviceConfig] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        cfg, map_bytes = _device(entry, i, ctx, where, p.parent)
        if cfg.name in seen:
            raise where.fail(f"device {cfg.name!r} is listed twice (also device "
                             f"#{seen[cfg.name] + 1})", where.entry("devices", i), "name")
        seen[cfg.name] = i
        digest.update(map_bytes)
        devices.append(cfg)
    _check_gateways_used(ctx[1], devices, where)
    return Line(devices, ctx[1], digest.hexdigest())


def _check_gateways_used(gateways: dict[str, GatewaySpec], devices: list[DeviceConfig],
                         where: _Where) -> None:
    used = {gateway_key(d) for d in devices}
    node = _section(where.root, "gateways")
    for key in gateways:
        if key not in used:  # a typo would silently leave the real gateway unlimited
            written = next((str(k.value) for k, _ in getattr(node, "value", [])
                            if str(k.value).lower() == key), key)
            raise where.fail(f"gateway {written}: no device of the line is behind it",
                             node, written)


def fingerprint(cfg: DeviceConfig) -> str:
    """A short hash of everything the capture reads about a device (tags included)."""
    data = asdict(cfg) | {"tags": [t.model_dump() for t in cfg.tags]}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _state_name(line_file: str | Path) -> str:
    p = Path(line_file).resolve()
    tag = hashlib.sha256(str(p).encode()).hexdigest()[:12]
    return f"{p.stem}-{tag}.json"


def state_path(line_file: str | Path) -> Path:
    """Where the last run's view of a line file is kept: ``$SHOPFLOOR_HOME/buffer/lines/``,
    on the collector that reads the file, one JSON per file (by its absolute path).

    Beside the store-and-forward buffer because that folder is what outlives a run on
    every work pool: a Docker deployment mounts it as the collector's named volume,
    while the rest of ``$SHOPFLOOR_HOME`` is new in every container (there the view
    would be lost and every run would be a first run)."""
    return shopfloor_home() / "buffer" / "lines" / _state_name(line_file)


def _legacy_state_path(line_file: str | Path) -> Path:
    """Where releases before the move kept the view (``$SHOPFLOOR_HOME/lines/``): read
    once, so an upgraded process worker still reports the first change."""
    return shopfloor_home() / "lines" / _state_name(line_file)


def _read_state(line_file: str | Path) -> dict[str, str] | None:
    for place in (state_path(line_file), _legacy_state_path(line_file)):
        try:
            return dict(json.loads(place.read_text(encoding="utf-8"))["devices"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def record_run(line_file: str | Path, line: Line) -> Changes:
    """Compare ``line`` with the last run's (kept in :func:`state_path`), then keep it."""
    state = state_path(line_file)
    now = {d.name: fingerprint(d) for d in line.devices}
    before = _read_state(line_file)
    changes = Changes(first=before is None)
    if before is not None:
        changes.added = sorted(set(now) - set(before))
        changes.removed = sorted(set(before) - set(now))
        changes.changed = sorted(n for n in set(now) & set(before) if now[n] != before[n])
    state.parent.mkdir(parents=True, exist_ok=True)
    tmp = state.with_suffix(".tmp")
    tmp.write_text(json.dumps({"digest": line.digest, "devices": now}), encoding="utf-8")
    tmp.replace(state)  # a crash mid-write never leaves half a file
    return changes


def describe_line(line: Line) -> list[str]:
    """Lines for ``shopfloor modbus check-line``: each device, its tags, the gateways."""
    out = [f"{len(line.devices)} devices, {len(line.gateways)} gateways, "
           f"sha256 {line.digest[:16]}"]
    for d in line.devices:
        where = d.serial_port if d.transport == "serial" else f"{d.host}:{d.port}"
        out.append(f"device {d.name}: {d.transport} {where} unit {d.unit_id}, loc {d.loc_id}, "
                   f"{len(d.tags)} tags ({', '.join(t.name for t in d.tags)})")
    for key, g in line.gateways.items():
        extra = ", ".join(f"{k} {v}" for k, v in g.settings().items())
        out.append(f"gateway {key}: concurrency {g.concurrency}" + (f", {extra}" if extra else ""))
    return out
