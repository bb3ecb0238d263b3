"""Table creation in the databases the blocks point at (`shopfloor db init`, the demo)."""

from collections.abc import Iterator

from prefect_sqlalchemy import SqlAlchemyConnector

from blocks.bootstrap import DB_BLOCKS
from blocks.resolve import connector_url, load_block
from shopfloor.db.engine import check_connection, init_db, make_engine
from shopfloor.db.urls import display_url
from shopfloor.identifiers import check_optional_identifier
from shopfloor.settings import db_schema


def init_databases(block: str | None = None, url: str | None = None,
                   schema: str | None = None) -> Iterator[str]:
    """Create the tables in one database (``url`` or ``block``) or in every database block.

    Blocks that point at the same database are initialised once.
    """
    schema = schema if schema is not None else db_schema()
    check_optional_identifier(schema, "schema")  # before any connection is opened
    targets: dict[str, str] = {}
    if url:
        targets[url] = "--url"
    else:
        for name in [block] if block else list(DB_BLOCKS):
            targets.setdefault(connector_url(load_block(name, SqlAlchemyConnector)), name)
    for target_url, name in targets.items():
        engine = make_engine(target_url)
        check_connection(engine, name)
        tables = init_db(engine, schema)
        shown = display_url(engine.url)
        yield f"{name:<24} {shown}: {len(tables.metadata.sorted_tables)} tables ready"
        engine.dispose()
