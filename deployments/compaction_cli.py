"""``shopfloor compaction``: register raw keys and compact them from the command line."""

from typing import Annotated, Any

import typer

from deployments.flowcli import flow_command

compaction_app = typer.Typer(no_args_is_help=True)


@flow_command(compaction_app, "flows.s3_compaction:register_s3_keys", name="register")
def register(params: dict[str, Any]) -> None:
    """List the objects that may be new under a prefix and register the new ones as PENDING."""
    from blocks.resolve import require_blocks
    from flows.s3_compaction import register_s3_keys

    require_blocks(params["raw_logs"], params["metadata_db"])
    counts = register_s3_keys(**params)
    typer.echo(", ".join(f"{k} {v}" for k, v in counts.items()))


@flow_command(compaction_app, "flows.s3_compaction:s3_compaction", name="run")
def run(params: dict[str, Any], until_done: Annotated[bool, typer.Option(
        help="Run again until nothing is pending.")] = False) -> None:
    """Claim keys, compact them to Parquet, mark them SUCCESS or QUARANTINED."""
    from blocks.resolve import require_blocks
    from flows.s3_compaction import s3_compaction

    require_blocks(params["raw_logs"], params["lake"], params["metadata_db"])
    while True:
        s = s3_compaction(**params)
        typer.echo(", ".join(f"{k} {v}" for k, v in s.items()))
        if not until_done or s["keys_claimed"] == 0:
            return


@compaction_app.command("import-registry")
def import_registry(
    source_db: Annotated[str, typer.Option(help="Database block of the seed's registry.")],
    source_table: Annotated[str, typer.Option(help="The seed's registry: [schema.]table.")],
    metadata_db: Annotated[str, typer.Option(help="Database block of our s3_object.")] =
        "shopfloor-metadata-db",
    schema: Annotated[str | None, typer.Option(
        help="Schema of s3_object (default: $SHOPFLOOR_DB_SCHEMA).")] = None,
    key_column: Annotated[str | None, typer.Option(
        help="Seed column of the S3 key (default: key, else s3_key).")] = None,
    status_column: Annotated[str, typer.Option(help="Seed column of the status.")] =
        "compression_status",
    run_id_column: Annotated[str, typer.Option(help="Seed column of the run id.")] =
        "compression_run_id",
    distrik_column: Annotated[str | None, typer.Option(
        help="Seed column of the district (default: from the key layout).")] = None,
    default_distrik: Annotated[str | None, typer.Option(
        help="District of keys whose layout names none (else they are skipped).")] = None,
    status_map: Annotated[list[str] | None, typer.Option(
        help="Extra seed status mapping SEED=PENDING|SUCCESS|FAILED|QUARANTINED "
             "(repeatable).")] = None,
    retry_failed: Annotated[bool, typer.Option(
        help="Import the seed's FAILED keys as PENDING (default: FAILED, not retried).")] =
        False,
    chunk_size: Annotated[int, typer.Option(min=1, max=100_000,
                                            help="Seed rows per read and write.")] = 5000,
) -> None:
    """Import the seed's S3 registry into s3_object, keeping what was already processed.

    Safe to repeat: keys already in s3_object are never downgraded.
    """
    from shopfloor.compaction.keys import check_district
    from shopfloor.compaction.seed_import import SeedColumns, split_table_name
    from shopfloor.compaction.seed_import import import_registry as run_import
    from shopfloor.compaction.seed_registry import parse_status_map
    from shopfloor.compaction.seed_registry import status_map as build_status_map
    from shopfloor.db.engine import check_connection
    from shopfloor.db.schema import configured_tables
    from tasks import runtime

    # Every value is checked before a block is loaded or a database touched.
    split_table_name(source_table)
    if default_distrik is not None:
        check_district(default_distrik)
    mapping = build_status_map(parse_status_map(status_map or []), retry_failed)
    tables = configured_tables(schema)
    source, target = runtime.engine(source_db), runtime.engine(metadata_db)
    check_connection(source, source_db)
    check_connection(target, metadata_db)
    _require_registry(target, tables, metadata_db)
    columns = SeedColumns(key_column, status_column, run_id_column, distrik_column)
    counts = run_import(source, target, tables, source_table, columns, mapping,
                        default_district=default_distrik, chunk_size=chunk_size)
    typer.echo(counts.summary())
    if counts.skipped_keys:
        typer.echo("skipped keys (first few): " + ", ".join(counts.skipped_keys))


def _require_registry(engine, tables, block: str) -> None:  # noqa: ANN001 - late imports
    from sqlalchemy import inspect

    from shopfloor.errors import UserError

    with engine.connect() as conn:
        table = tables.s3_object
        if not inspect(conn).has_table(table.name, schema=table.schema):
            raise UserError(
                f"no {table.name} table in {block!r}: create it with `shopfloor db init --block "
                f"{block}`")
