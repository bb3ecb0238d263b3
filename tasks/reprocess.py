"""Tasks of the reprocess-raw flow: find the devices, judge their landed window again."""

from dataclasses import dataclass, field
from datetime import datetime

from prefect import get_run_logger, task

from blocks.documents import documents_of_type
from blocks.modbus import ModbusDevice
from blocks.resolve import load_block
from shopfloor.compaction.faults import pause_hook_from_env
from shopfloor.db.types import utcnow
from shopfloor.errors import ShopfloorError
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.readings import reading_schema
from shopfloor.modbus.reprocess import delete_hourly, read_window, replace_window
from tasks import runtime
from tasks.runtime import LIVE


def _district_of(data: dict) -> object:
    """A saved ModbusDevice's district; blocks saved before 2026-12 call it ``dstrct_code``."""
    return data.get("district", data.get("dstrct_code"))


@task(name="resolve-reprocess-devices", **LIVE)
def resolve_devices(devices: list[str] | None, district: str | None) -> list[DeviceConfig]:
    """The ``ModbusDevice`` blocks to reprocess: those named, or every one whose
    district is ``district`` (their current register maps and limits).

    Args:
        devices: ModbusDevice block names.
        district: a district code instead of names.
    """
    if devices:
        return [load_block(n, ModbusDevice).to_config(n) for n in devices]
    slug = ModbusDevice.get_block_type_slug()
    docs = documents_of_type(slug)
    found = [load_block(d.name, ModbusDevice).to_config(d.name) for d in docs
             if d.name and _district_of(d.data or {}) == district]
    if not found:
        raise ShopfloorError(f"no ModbusDevice block has district {district!r}")
    return sorted(found, key=lambda c: c.name)


@dataclass
class DeviceReprocess:
    """What reprocessing one device's window did (a line of the table artifact)."""

    device: str
    loc_id: str
    objects_read: int = 0
    objects_rewritten: int = 0
    rows_valid_before: int = 0
    rows_rejected_before: int = 0
    rows_valid_after: int = 0
    rows_rejected_after: int = 0
    raw_deleted: int = 0
    raw_written: int = 0
    quarantine_deleted: int = 0
    quarantine_written: int = 0
    hours: list[datetime] = field(default_factory=list)

    def as_row(self) -> dict[str, object]:
        row = {k: v for k, v in self.__dict__.items() if k != "hours"}
        return {**row, "hours_with_objects": len(self.hours)}


@task(name="reprocess-device", **LIVE)
def reprocess_device(cfg: DeviceConfig, hours: list[datetime], raw_logs: str, target_db: str,
                     run_id: str) -> DeviceReprocess:
    """Judge the device's landed objects of ``hours`` again; replace its raw and
    quarantine rows of those hours in one transaction; rewrite the changed objects.

    Args:
        cfg: the device, with its current register map.
        hours: whole UTC hours of the window.
        raw_logs: storage block the objects landed in.
        target_db: SqlAlchemyConnector block of ``temperature_raw`` and ``quarantine``.
        run_id: flow run id, for the quarantine rows.
    """
    storage, tables = runtime.storage(raw_logs), runtime.tables()
    objects = read_window(storage, cfg, hours, reading_schema(cfg.tags))
    out = DeviceReprocess(cfg.name, cfg.loc_id, objects_read=len(objects))
    for o in objects:
        out.rows_rejected_before += o.before_rejected
        out.rows_valid_before += len(o.lines) - o.before_rejected
        out.rows_rejected_after += o.rejected
        out.rows_valid_after += len(o.lines) - o.rejected
    ingested_at = utcnow() if tables.raw_has_ingested_at else None
    fault = pause_hook_from_env() or (lambda step: None)  # tests/crash; normally nothing
    with runtime.engine(target_db).begin() as conn:
        done = replace_window(conn, tables, cfg, objects, run_id, ingested_at)
    fault("after_commit")
    # After the commit: a failure here leaves old verdicts in the objects, which a rerun
    # fixes (verdicts are always judged from the values, never from the old verdict).
    # Each object is replaced whole (write_bytes): a kill leaves it old or new.
    for o in objects:
        if o.changed:
            storage.write_bytes(o.key, o.body)
            out.objects_rewritten += 1
            fault("mid_rewrite")
    fault("after_publish")
    out.raw_deleted, out.raw_written = done.raw_deleted, done.raw_written
    out.quarantine_deleted, out.quarantine_written = (done.quarantine_deleted,
                                                      done.quarantine_written)
    out.hours = done.hours
    get_run_logger().info(
        "device %s: %d objects (%d rewritten); valid %d -> %d, rejected %d -> %d",
        cfg.name, out.objects_read, out.objects_rewritten, out.rows_valid_before,
        out.rows_valid_after, out.rows_rejected_before, out.rows_rejected_after)
    return out


@task(name="drop-emptied-hours", **LIVE)
def drop_emptied_hours(target_db: str, keys: list[tuple[str, str, str]]) -> int:
    """Delete hourly rows of reprocessed locations that no valid reading backs any more.

    Args:
        target_db: SqlAlchemyConnector block of ``temperature_hourly``.
        keys: ``(loc_id, ymd, hh)`` the re-aggregation found without raw rows.
    """
    if not keys:
        return 0
    with runtime.engine(target_db).begin() as conn:
        return delete_hourly(conn, runtime.tables(), keys)
