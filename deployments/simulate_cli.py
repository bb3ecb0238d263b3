"""``shopfloor simulate modbus`` and ``shopfloor modbus add-device``."""

import time
from pathlib import Path
from typing import Annotated, Literal

import typer

simulate_app = typer.Typer(no_args_is_help=True, help="Simulators for local runs and tests.")
modbus_app = typer.Typer(no_args_is_help=True, help="Modbus devices (ModbusDevice blocks).")


@simulate_app.command("modbus")
def simulate_modbus(
    port: Annotated[int, typer.Option(help="Port of device 1; device i listens on port+i-1.")]
    = 5020,
    devices: Annotated[int, typer.Option(help="Number of simulated devices.")] = 1,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    register_map: Annotated[Path | None, typer.Option(
        "--map", help="YAML/JSON register map to serve (default: the built-in plant map).")]
    = None,
    fault: Annotated[list[str] | None, typer.Option(
        help="DEVICE=KIND, e.g. 2=nan; KIND: refuse, no-answer, delay, exception, nan, "
             "out-of-range. Repeat for several devices.")] = None,
    framer: Annotated[str, typer.Option(help="socket (Modbus TCP) or rtu (RTU over TCP).")]
    = "socket",
    delay_seconds: Annotated[float, typer.Option(help="Answer delay of 'delay' devices.")]
    = 0.5,
    exception_code: Annotated[int, typer.Option(help="Code 'exception' devices answer.")] = 4,
    duration: Annotated[float, typer.Option(help="Stop after this many seconds (0: Ctrl-C).")]
    = 0.0,
) -> None:
    """Serve simulated Modbus devices with slowly changing values and injected faults."""
    from shopfloor.errors import ShopfloorError
    from shopfloor.modbus.simulator import (
        ModbusSimulator,
        build_devices,
        default_map,
        parse_faults,
    )
    from shopfloor.modbus.tags import load_register_map

    if framer not in ("socket", "rtu"):
        raise ShopfloorError(f"framer must be socket or rtu, got {framer!r}")
    tags = load_register_map(register_map) if register_map else default_map()
    sims = build_devices(port, devices, tags, parse_faults(fault or [], devices),
                         _framer(framer), delay_seconds, exception_code)
    with ModbusSimulator(sims, host=host):
        for i, d in enumerate(sims, start=1):
            typer.echo(f"device {i}: {host}:{d.port} unit {d.unit_id} {d.framer} "
                       f"{len(d.tags)} tags fault={d.fault}")
        typer.echo("serving; Ctrl-C to stop" if duration <= 0 else f"serving {duration:g}s")
        _serve(duration)


def _framer(name: str) -> Literal["socket", "rtu"]:
    return "rtu" if name == "rtu" else "socket"


def _serve(duration: float) -> None:
    deadline = time.monotonic() + duration if duration > 0 else None
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        typer.echo("stopped")


@modbus_app.command("add-device")
def add_device(
    name: Annotated[str, typer.Argument(help="Block name, e.g. line1-plc.")],
    register_map: Annotated[Path, typer.Option("--map", help="YAML/JSON register map.")],
    loc_id: Annotated[str, typer.Option(help="Location id the readings are stored under.")],
    host: Annotated[str, typer.Option(help="Device host (TCP transports).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Device TCP port.")] = 502,
    unit_id: Annotated[int, typer.Option(help="Modbus unit id.")] = 1,
    transport: Annotated[str, typer.Option(help="tcp, rtu-over-tcp or serial.")] = "tcp",
    serial_port: Annotated[str | None, typer.Option(help="Serial device, for serial.")] = None,
    baudrate: Annotated[int, typer.Option(help="Serial baud rate.")] = 9600,
    dstrct_code: Annotated[str, typer.Option(help="District code for landed JSON.")] = "",
    timeout_seconds: Annotated[float, typer.Option(help="Per-request timeout.")] = 3.0,
    retries: Annotated[int, typer.Option(help="Retries after a failed read.")] = 2,
    max_registers: Annotated[int, typer.Option(help="Registers per read (1..125).")] = 125,
    max_gap: Annotated[int, typer.Option(help="Unused registers a read may span.")] = 10,
) -> None:
    """Create or update a ModbusDevice block from a register map file."""
    from blocks.modbus import ModbusDevice
    from shopfloor.modbus.capture import device_plan
    from shopfloor.modbus.tags import load_register_map

    block = ModbusDevice(
        host=host, port=port, unit_id=unit_id, transport=transport, serial_port=serial_port,
        baudrate=baudrate, loc_id=loc_id, dstrct_code=dstrct_code,
        timeout_seconds=timeout_seconds, retries=retries, max_registers_per_request=max_registers,
        max_gap_registers=max_gap, register_map=load_register_map(register_map))
    plan = device_plan(block.to_config(name))  # reject a map that cannot be read, by tag
    block.save(name, overwrite=True)
    where = serial_port if transport == "serial" else f"{host}:{port}"
    typer.echo(f"{name}: {transport} {where} unit {unit_id}, loc_id {loc_id}, "
               f"{len(block.register_map)} tags in {len(plan)} reads")


@modbus_app.command("read")
def read_device(
    name: Annotated[str, typer.Argument(help="ModbusDevice block name.")],
) -> None:
    """Poll a device once and print every tag's value and verdict (like `telegraf --test`).

    Nothing is written; use it to check a register map while commissioning a device.
    """
    from blocks.modbus import ModbusDevice
    from blocks.resolve import load_block
    from shopfloor.errors import ShopfloorError
    from shopfloor.modbus.capture import CaptureStats, capture_device, device_plan
    from shopfloor.modbus.sink import ReadingSink

    cfg = load_block(name, ModbusDevice).to_config(name)
    frames: list = []
    stats = capture_device(cfg, 1, 0.0, time.time(), frames.append)
    for r in device_plan(cfg):
        typer.echo(f"read {r.register_type} {r.address}+{r.count}: "
                   f"{', '.join(t.name for t in r.tags)}")
    if not frames:
        raise ShopfloorError(f"device {name} did not answer: {stats.last_error}")
    result = ReadingSink(cfg, CaptureStats(name), "read").validate(frames[0])
    row = frames[0].iloc[0]
    reasons = [x for q in result.quarantined for x in q.reasons]
    for t in cfg.tags:
        bad = [x.check for x in reasons if x.column == t.column]
        verdict = "ok" if not bad else "REJECTED: " + ", ".join(bad)
        typer.echo(f"{t.name:<20} {t.column:<18} {row[t.column]!s:<22} {verdict}")
    if row["missing_tags"]:
        typer.echo(f"missing tags: {row['missing_tags']} ({stats.last_error})")
