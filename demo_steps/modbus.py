"""The demo's Modbus step: a simulator in-process, device blocks, a short capture."""

from blocks.modbus import ModbusDevice
from flows.modbus_capture import modbus_capture
from shopfloor.modbus.simulator import (
    ModbusSimulator,
    build_devices,
    default_map,
    free_port_run,
)

DEMO_FAULTS = {3: "nan", 4: "refuse"}  # device 3 sends NaN, device 4 is switched off


def modbus_demo_step(samples: int = 6, interval_seconds: float = 0.5) -> list[str]:
    """Capture from four simulated devices (one sending NaN, one refusing connections)."""
    sims = build_devices(free_port_run(4), 4, default_map(), DEMO_FAULTS)  # type: ignore[arg-type]
    names = []
    for i, sim in enumerate(sims, start=1):
        ModbusDevice(port=sim.port, loc_id=f"L{i:03d}", district="DEMO",
                     timeout_seconds=0.5, retries=1, backoff_seconds=0.05,
                     register_map=sim.tags).save(f"demo-plc-{i}", overwrite=True)
        names.append(f"demo-plc-{i}")
    with ModbusSimulator(sims):
        summary = modbus_capture(names, samples=samples, interval_seconds=interval_seconds,
                                 land_json=True)
    lines = [f"simulated devices on 127.0.0.1:{sims[0].port}..{sims[-1].port}, faults: "
             + ", ".join(f"demo-plc-{k}={v}" for k, v in DEMO_FAULTS.items())]
    lines += [f"  {s['device']:<12} samples ok {s['samples_ok']}/{samples}, requests "
              f"{s['requests_sent']}, rows written {s['rows_written']}, quarantined "
              f"{s['rows_quarantined']}, json objects {s['objects_landed']}"
              + (f"  ({s['last_error']})" if s["last_error"] else "") for s in summary]
    return lines
