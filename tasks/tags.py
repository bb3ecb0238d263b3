"""The tag registry from the command line (``shopfloor tags import|list``): register a
device's tags in the warehouse, list what is registered. Plain functions, no flow."""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Engine

from shopfloor.db.engine import check_connection, make_engine
from shopfloor.db.schema import Tables, configured_tables
from shopfloor.identifiers import check_optional_identifier
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.tag_points import ensure_tag_tables, tag_infos
from shopfloor.tags.registry import list_tags, register_tags
from tasks import runtime


@contextmanager
def warehouse(block: str, url: str | None, schema: str | None
              ) -> Iterator[tuple[Engine, Tables]]:
    """A connected engine on the warehouse (``url`` typed by hand, else the block) and its
    configured tables, ``tags`` and ``tag_samples`` created where missing."""
    tables = configured_tables(check_optional_identifier(schema, "schema"))
    engine = make_engine(url) if url else runtime.engine(block)
    try:
        check_connection(engine, "--url" if url else block)
        ensure_tag_tables(engine, tables)
        yield engine, tables
    finally:
        if url:
            engine.dispose()


def import_tags(configs: Sequence[DeviceConfig], block: str, url: str | None = None,
                schema: str | None = None) -> dict[str, int]:
    """Register the tags of ``configs`` (idempotent upserts); tags per device."""
    with warehouse(block, url, schema) as (engine, tables), engine.begin() as conn:
        return {cfg.name: len(register_tags(conn, tables.tags, tag_infos(cfg)))
                for cfg in configs}


def registered_tags(block: str, url: str | None = None, schema: str | None = None,
                    device: str | None = None, location: str | None = None) -> list[dict]:
    """The registered tags, by device and name (optionally one device or location)."""
    with warehouse(block, url, schema) as (engine, tables), engine.connect() as conn:
        return list_tags(conn, tables.tags, device, location)
