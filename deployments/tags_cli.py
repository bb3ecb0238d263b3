"""``shopfloor tags``: the tag registry (docs/tags.md): import register maps, list tags."""

from pathlib import Path
from typing import Annotated

import typer

tags_app = typer.Typer(no_args_is_help=True)

BlockOption = Annotated[str, typer.Option(
    help="SqlAlchemyConnector block of the warehouse.")]
UrlOption = Annotated[str | None, typer.Option(help="Database URL instead of a block.")]
SchemaOption = Annotated[str | None, typer.Option(
    help="Schema of the tables (default: $SHOPFLOOR_DB_SCHEMA).")]


def _device_configs(names: list[str] | None) -> list:
    """The ``ModbusDevice`` blocks named, or every one saved."""
    from blocks.documents import documents_of_type
    from blocks.modbus import ModbusDevice
    from blocks.resolve import load_block

    if not names:
        docs = documents_of_type(ModbusDevice.get_block_type_slug())
        names = sorted(d.name for d in docs if d.name)
    return [load_block(n, ModbusDevice).to_config(n) for n in names]


@tags_app.command("import")
def import_(
    register_map: Annotated[Path | None, typer.Option(
        "--map", help="A YAML/JSON register map (with --device and --loc-id); without it, "
                      "the maps of ModbusDevice blocks.")] = None,
    device: Annotated[list[str] | None, typer.Option(
        help="The device the map belongs to; without --map: only these ModbusDevice "
             "blocks (repeatable; default: all).")] = None,
    loc_id: Annotated[str | None, typer.Option(help="Location of the map's device.")] = None,
    block: BlockOption = "shopfloor-warehouse-db",
    url: UrlOption = None,
    schema: SchemaOption = None,
) -> None:
    """Register the tags of a register map, or of every configured device (idempotent:
    a repeat changes nothing; a renamed tag at the same register keeps its id)."""
    from shopfloor.errors import UserError
    from shopfloor.modbus.client import DeviceConfig
    from shopfloor.modbus.tags import load_register_map
    from tasks.tags import import_tags

    if register_map is not None:
        if not device or len(device) != 1 or not loc_id:
            raise UserError("--map needs one --device and --loc-id")
        configs = [DeviceConfig(name=device[0], loc_id=loc_id,
                                tags=tuple(load_register_map(register_map)))]
    else:
        configs = _device_configs(device)
        if not configs:
            raise UserError("no ModbusDevice block found: give --map, --device and --loc-id")
    for name, count in import_tags(configs, block, url, schema).items():
        typer.echo(f"{name}: {count} tags registered")


@tags_app.command("list")
def list_(
    device: Annotated[str | None, typer.Option(help="Only this device.")] = None,
    location: Annotated[str | None, typer.Option(help="Only this location.")] = None,
    block: BlockOption = "shopfloor-warehouse-db",
    url: UrlOption = None,
    schema: SchemaOption = None,
) -> None:
    """List the registered tags: id, device, name, unit, data type, location, source."""
    from tasks.tags import registered_tags

    rows = registered_tags(block, url, schema, device, location)
    typer.echo(f"{'id':>6}  {'device':<20} {'name':<24} {'unit':<8} {'type':<8} "
               f"{'location':<12} source")
    for r in rows:
        typer.echo(f"{r['id']:>6}  {r['device']:<20} {r['name']:<24} {r['unit'] or '-':<8} "
                   f"{r['data_type']:<8} {r['location'] or '-':<12} {r['source_name'] or '-'}")
    typer.echo(f"{len(rows)} tags")
