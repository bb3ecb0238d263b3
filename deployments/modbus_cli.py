"""``shopfloor modbus``: add a device, read it once, capture from devices now."""

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deployments.flowcli import As, flow_command
from shopfloor.modbus.device import DEVICE_DEFAULTS, DEVICE_SETTINGS

if TYPE_CHECKING:
    from shopfloor.modbus.tags import TagSpec

modbus_app = typer.Typer(no_args_is_help=True)

# Device settings: every option of add-device named like a DEVICE_SETTINGS entry is a
# setting of the block, with the dataclass's default (tests check none is missing).
_D = DEVICE_DEFAULTS


@modbus_app.command("add-device")
def add_device(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Block name, e.g. line1-plc.")],
    register_map: Annotated[Path, typer.Option("--map", help="YAML/JSON register map.")],
    loc_id: Annotated[str, typer.Option(help="Location id the readings are stored under.")],
    host: Annotated[str, typer.Option(help="Device host (TCP transports).")] = _D.host,
    port: Annotated[int, typer.Option(help="Device TCP port.")] = _D.port,
    unit_id: Annotated[int, typer.Option(help="Modbus unit id.")] = _D.unit_id,
    transport: Annotated[str, typer.Option(help="tcp, rtu-over-tcp or serial.")] = _D.transport,
    serial_port: Annotated[str | None, typer.Option(help="Serial device, for serial.")]
    = _D.serial_port,
    baudrate: Annotated[int, typer.Option(help="Serial baud rate.")] = _D.baudrate,
    parity: Annotated[str, typer.Option(help="Serial parity: N, E or O.")] = _D.parity,
    stopbits: Annotated[int, typer.Option(help="Serial stop bits.")] = _D.stopbits,
    bytesize: Annotated[int, typer.Option(help="Serial data bits.")] = _D.bytesize,
    # --dstrct-code: the block field's name before 2026-12 (the seed's spelling).
    district: Annotated[str, typer.Option(
        "--district", "--dstrct-code", help="District code for landed JSON.")] = _D.district,
    timeout_seconds: Annotated[float, typer.Option(help="Per-request timeout.")]
    = _D.timeout_seconds,
    retries: Annotated[int, typer.Option(help="Retries after a failed read.")] = _D.retries,
    backoff_seconds: Annotated[float, typer.Option(help="First retry delay; doubles.")]
    = _D.backoff_seconds,
    max_registers_per_request: Annotated[int, typer.Option(
        "--max-registers", help="Registers per read (1..125).")] = _D.max_registers_per_request,
    max_bits_per_request: Annotated[int, typer.Option(
        "--max-bits", help="Coils or discrete inputs per read (1..2000).")]
    = _D.max_bits_per_request,
    max_gap_registers: Annotated[int, typer.Option(
        "--max-gap", help="Unused registers a read may span.")] = _D.max_gap_registers,
    pause_after_connect_seconds: Annotated[float, typer.Option(
        "--pause-after-connect", help="Seconds to wait after connecting (workaround).")]
    = _D.pause_after_connect_seconds,
    pause_between_requests_seconds: Annotated[float, typer.Option(
        "--pause-between-requests", help="Seconds between two requests (workaround).")]
    = _D.pause_between_requests_seconds,
    close_connection_after_poll: Annotated[bool, typer.Option(
        help="Close the connection after every poll (workaround).")]
    = _D.close_connection_after_poll,
    one_request_per_tag: Annotated[bool, typer.Option(
        help="One read per tag (workaround).")] = _D.one_request_per_tag,
    read_coils_starting_at_zero: Annotated[bool, typer.Option(
        help="First coil read starts at address 0 (workaround).")]
    = _D.read_coils_starting_at_zero,
) -> None:
    """Create or update a ModbusDevice block from a register map file."""
    from pydantic import ValidationError

    from blocks.modbus import ModbusDevice
    from blocks.saving import save_block
    from shopfloor.errors import UserError
    from shopfloor.modbus.capture import device_plan
    from shopfloor.modbus.tags import load_device_map

    tags, workarounds = load_device_map(register_map)
    settings = {key: value for key, value in ctx.params.items() if key in DEVICE_SETTINGS}
    # the map's workarounds, unless the command line names the setting itself
    settings.update({key: value for key, value in workarounds.items()
                     if _source(ctx, key) != "COMMANDLINE"})
    try:
        block = ModbusDevice(**settings, register_map=tags)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise UserError(f"device {name}: {'.'.join(map(str, err['loc']))}: "
                             f"{err['msg']}") from None
    plan = device_plan(block.to_config(name))  # reject a map that cannot be read, by tag
    save_block(block, name)
    where = serial_port if transport == "serial" else f"{host}:{port}"
    typer.echo(f"{name}: {transport} {where} unit {unit_id}, loc_id {loc_id}, "
               f"{len(block.register_map)} tags in {len(plan)} reads")


def _source(ctx: typer.Context, key: str) -> str:
    """Where an option's value came from (typer's own click copy names it by enum)."""
    source = ctx.get_parameter_source(key)
    return getattr(source, "name", "")


@modbus_app.command("read")
def read_device(
    name: Annotated[str, typer.Argument(help="ModbusDevice block name.")],
) -> None:
    """Poll a device once and print every tag's value and verdict (like `telegraf --test`).

    Nothing is written; use it to check a register map while commissioning a device.
    """
    from blocks.modbus import ModbusDevice
    from blocks.resolve import load_block
    from shopfloor.errors import UserError
    from shopfloor.modbus.capture import CaptureStats, capture_device, device_plan
    from shopfloor.modbus.sink import ReadingSink

    cfg = load_block(name, ModbusDevice).to_config(name)
    batches: list = []
    stats = capture_device(cfg, 1, 0.0, time.time(), batches.append)
    for r in device_plan(cfg):
        typer.echo(f"read {r.register_type} {r.address}+{r.count}: "
                   f"{', '.join(t.name for t in r.tags)}")
    if not batches:
        raise UserError(f"device {name} did not answer: {stats.last_error}")
    _, quarantined = ReadingSink(cfg, CaptureStats(name), "read").validate(batches[0])
    row = batches[0].frame().iloc[0]
    for t, value, verdict in tag_verdicts(cfg.tags, row, quarantined):
        typer.echo(f"{t.name:<20} {t.column:<18} {value:<22} {verdict}")
    if row["missing_tags"]:
        typer.echo(f"missing tags: {row['missing_tags']} ({stats.last_error})")


@modbus_app.command("check-line")
def check_line(
    path: Annotated[Path, typer.Argument(help="Line file (YAML) to check.")],
) -> None:
    """Check a line file as modbus-capture reads it: print its devices, their tags and
    the gateways, or the first error (file, line and key). Nothing is contacted."""
    from shopfloor.modbus.line import describe_line, load_line

    for text in describe_line(load_line(path)):
        typer.echo(text)


def tag_verdicts(tags: Sequence["TagSpec"], row: Any,
                 quarantined: Sequence[Any]) -> list[tuple["TagSpec", str, str]]:
    """(tag, value, verdict) per tag of one reading: ``ok`` only for a tag that was read
    and passed every check; ``MISSING`` for a tag whose read failed (its value is then
    no reading at all, whatever the frame holds); ``REJECTED: <checks>`` otherwise."""
    missing = set(filter(None, str(row["missing_tags"]).split(",")))
    reasons = [x for q in quarantined for x in q.reasons]
    lines = []
    for t in tags:
        if t.name in missing:
            lines.append((t, "-", "MISSING: the read failed"))
            continue
        bad = [x.check for x in reasons if x.column == t.column]
        lines.append((t, str(row[t.column]), "ok" if not bad else "REJECTED: " + ", ".join(bad)))
    return lines


def _check_capture(params: dict[str, Any]) -> None:
    """The capture's rules across fields, with the longest run the flow's timeout allows."""
    from flows.modbus_capture import TIMEOUT_MARGIN_SECONDS, TIMEOUT_SECONDS
    from shopfloor.errors import UserError
    from shopfloor.modbus.capture import check_parameters
    from shopfloor.modbus.line import load_line

    check_parameters(params["devices"] or [], params["samples"], params["interval_seconds"],
                     params["span_seconds"], TIMEOUT_SECONDS - TIMEOUT_MARGIN_SECONDS)
    if params.get("line_file"):
        load_line(params["line_file"])  # a bad file is one error line, before a run exists
    elif not params["devices"]:
        raise UserError("no device to poll: name ModbusDevice blocks or give --line-file")


@flow_command(modbus_app, "flows.modbus_capture:modbus_capture", name="capture",
              params={"devices": As(argument=True)}, check=_check_capture)
def capture(params: dict[str, Any]) -> None:
    """Run the modbus-capture flow now and print one line per device."""
    from blocks.resolve import require_blocks
    from flows.modbus_capture import modbus_capture

    require_blocks(*(params["devices"] or []),
                   *([params["target_db"]] if params["write_raw"] else []),
                   *([params["raw_logs"]] if params["land_json"] else []))
    for row in modbus_capture(**params):
        typer.echo(f"{row['device']}: " + ", ".join(
            f"{k} {v}" for k, v in row.items() if k != "device" and v != ""))


@flow_command(modbus_app, "flows.reprocess:reprocess_raw", name="reprocess",
              params={"devices": As(option="--device")},
              check="flows.reprocess:check_parameters")
def reprocess(params: dict[str, Any]) -> None:
    """Judge landed raw data of a window again under the devices' current rules (the
    reprocess-raw flow) and print what changed."""
    from blocks.resolve import require_blocks
    from flows.reprocess import reprocess_raw

    require_blocks(*(params["devices"] or []), params["raw_logs"], params["target_db"],
                   params["hourly_source_db"], params["hourly_target_db"])
    for key, value in reprocess_raw(**params).items():
        typer.echo(f"{key}: {value}")
