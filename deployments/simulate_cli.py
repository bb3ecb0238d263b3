"""``shopfloor simulate modbus``: simulated devices for local runs and tests."""

import time
from pathlib import Path
from typing import Annotated, Literal

import typer

simulate_app = typer.Typer(no_args_is_help=True)


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
    light: Annotated[bool, typer.Option(
        help="A minimal server instead of pymodbus' (register reads only, fault refuse "
             "only): several times the devices per core, for benchmarks.")] = False,
) -> None:
    """Serve simulated Modbus devices with slowly changing values and injected faults."""
    from shopfloor.errors import UserError
    from shopfloor.modbus.simulator import (
        LightModbusSimulator,
        ModbusSimulator,
        build_devices,
        default_map,
        parse_faults,
    )
    from shopfloor.modbus.tags import load_register_map

    if framer not in ("socket", "rtu"):
        raise UserError(f"framer must be socket or rtu, got {framer!r}")
    tags = load_register_map(register_map) if register_map else default_map()
    sims = build_devices(port, devices, tags, parse_faults(fault or [], devices),
                         _framer(framer), delay_seconds, exception_code)
    with (LightModbusSimulator if light else ModbusSimulator)(sims, host=host):
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
