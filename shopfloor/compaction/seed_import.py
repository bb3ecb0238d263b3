"""Importing the seed's S3 registry into ``s3_object``, in chunks, safe to repeat.

The seed's table is read once, streamed in chunks; each chunk is written in its own
transaction: keys not in ``s3_object`` are inserted (insert-or-ignore on ``key_hash``),
keys already there are left as they are, except a PENDING one that the seed had
finished (SUCCESS, FAILED, QUARANTINED), which takes the seed's status: the import
never downgrades a key and never hands a finished key to compaction again. Rerunning
the import changes nothing; an import stopped half-way is finished by running it again.
"""

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    Select,
    String,
    Table,
    Update,
    and_,
    bindparam,
    distinct,
    inspect,
    select,
    update,
)

from shopfloor.compaction.seed_registry import (
    TERMINAL,
    SeedRow,
    check_statuses,
    furthest_per_key,
    registry_row,
)
from shopfloor.db.schema import Tables
from shopfloor.db.types import utcnow
from shopfloor.db.upsert import upsert
from shopfloor.errors import ShopfloorError, UserError
from shopfloor.identifiers import check_identifier

LOOKUP_CHUNK = 500  # key hashes per IN (...): far below every dialect's parameter limit
KEY_COLUMN_CANDIDATES = ("key", "s3_key")


@dataclass(frozen=True)
class SeedColumns:
    """Column names of the seed's registry (``key=None``: ``key`` or ``s3_key``)."""

    key: str | None = None
    status: str = "compression_status"
    run_id: str = "compression_run_id"
    district: str | None = None


@dataclass
class ImportCounts:
    """What one import did. ``read = imported + already_present + upgraded + skipped``."""

    read: int = 0
    imported: Counter = field(default_factory=Counter)  # by status
    already_present: int = 0
    upgraded: Counter = field(default_factory=Counter)  # PENDING -> status
    skipped: Counter = field(default_factory=Counter)  # by reason
    skipped_keys: list[str] = field(default_factory=list)  # the first few, to show

    def summary(self) -> str:
        def by(c: Counter) -> str:
            return " (" + ", ".join(f"{k} {v}" for k, v in sorted(c.items())) + ")" if c else ""
        return (f"read {self.read}, imported {sum(self.imported.values())}{by(self.imported)}, "
                f"already present {self.already_present}, "
                f"upgraded from PENDING {sum(self.upgraded.values())}{by(self.upgraded)}, "
                f"skipped {sum(self.skipped.values())}{by(self.skipped)}")


def split_table_name(name: str) -> tuple[str | None, str]:
    """``"schema.table"`` or ``"table"`` as (schema, table), each checked strictly."""
    schema, _, table = name.rpartition(".")
    return (check_identifier(schema, "schema") if schema else None,
            check_identifier(table, "table"))


def resolve_columns(conn: Connection, schema: str | None, table: str,
                    columns: SeedColumns) -> SeedColumns:
    """``columns`` checked against the seed table (one clear error for a missing table or
    column), the key column found if not given."""
    insp = inspect(conn)
    shown = f"{schema}.{table}" if schema else table
    if not insp.has_table(table, schema=schema):
        raise ShopfloorError(f"seed registry table {shown} not found")
    present = {c["name"] for c in insp.get_columns(table, schema=schema)}
    key = columns.key or next((c for c in KEY_COLUMN_CANDIDATES if c in present), None)
    if key is None:
        raise UserError(f"{shown} has no column key or s3_key: name it with --key-column")
    wanted = {"key": key, "status": columns.status, "run id": columns.run_id,
              "district": columns.district}
    for what, name in wanted.items():
        if name is not None and name not in present:
            raise UserError(f"{shown} has no {what} column {name!r} "
                                 f"(columns: {', '.join(sorted(present))})")
    return SeedColumns(key, columns.status, columns.run_id, columns.district)


def seed_table(schema: str | None, table: str, columns: SeedColumns) -> Table:
    """The seed's table as far as the import reads it (names checked strictly)."""
    names = [columns.key or "key", columns.status, columns.run_id]
    if columns.district:
        names.append(columns.district)
    return Table(check_identifier(table, "table"), MetaData(schema=schema),
                 *(Column(check_identifier(n, "column"), String) for n in names))


def seed_select(seed: Table, columns: SeedColumns) -> Select:
    """Every seed row: key, status, run id (and the district column if any)."""
    cols = [seed.c[columns.key or "key"], seed.c[columns.status], seed.c[columns.run_id]]
    if columns.district:
        cols.append(seed.c[columns.district])
    return select(*cols)


def seed_statuses_select(seed: Table, columns: SeedColumns) -> Select:
    """The distinct statuses of the seed, checked before anything is written."""
    return select(distinct(seed.c[columns.status]))


def existing_select(tables: Tables, hashes: Sequence[str]) -> Select:
    """Status of the keys (by hash) already in ``s3_object``."""
    t = tables.s3_object
    return select(t.c.key_hash, t.c.compression_status).where(t.c.key_hash.in_(hashes))


def upgrade_statement(tables: Tables) -> Update:
    """A PENDING key takes the seed's finished status; any other status is left alone
    (the ``WHERE`` holds even if a run claimed the key since it was looked up)."""
    t = tables.s3_object
    return (update(t)
            .where(and_(t.c.key_hash == bindparam("b_key_hash"),
                        t.c.compression_status == "PENDING"))
            .values(compression_status=bindparam("b_status"),
                    compression_run_id=bindparam("b_run_id"),
                    error=bindparam("b_error")))


def _seed_rows(conn: Connection, stmt: Select, chunk_size: int) -> Iterator[list[SeedRow]]:
    result = conn.execution_options(stream_results=True, yield_per=chunk_size).execute(stmt)
    for part in result.partitions(chunk_size):
        yield [SeedRow(str(r[0]), r[1], r[2], r[3] if len(r) > 3 else None) for r in part]


def _existing(conn: Connection, tables: Tables, hashes: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for i in range(0, len(hashes), LOOKUP_CHUNK):
        found.update(conn.execute(existing_select(tables, hashes[i:i + LOOKUP_CHUNK])).all())
    return found


def write_chunk(conn: Connection, tables: Tables, rows: list[dict[str, Any]],
                counts: ImportCounts) -> None:
    """Insert the new keys of ``rows``, upgrade PENDING ones the seed finished."""
    existing = _existing(conn, tables, [r["key_hash"] for r in rows])
    new = [r for r in rows if r["key_hash"] not in existing]
    upgrades = [r for r in rows if existing.get(r["key_hash"]) == "PENDING"
                and r["compression_status"] in TERMINAL]
    upsert(conn, tables.s3_object, new, key_columns=["key_hash"], update_columns=[])
    if upgrades:
        conn.execute(upgrade_statement(tables), [
            {"b_key_hash": r["key_hash"], "b_status": r["compression_status"],
             "b_run_id": r["compression_run_id"], "b_error": r["error"]} for r in upgrades])
    counts.imported.update(r["compression_status"] for r in new)
    counts.upgraded.update(r["compression_status"] for r in upgrades)
    counts.already_present += len(rows) - len(new) - len(upgrades)


def import_registry(source: Engine, target: Engine, tables: Tables, source_table: str,
                    columns: SeedColumns, mapping: Mapping[str, str],
                    default_district: str | None = None, chunk_size: int = 5000,
                    now: datetime | None = None) -> ImportCounts:
    """Copy the seed registry ``source_table`` (``[schema.]table`` in ``source``) into
    ``tables.s3_object`` in ``target``; see the module docstring for what is kept."""
    schema, name = split_table_name(source_table)
    now = now or utcnow()
    counts = ImportCounts()
    with source.connect() as src:
        columns = resolve_columns(src, schema, name, columns)
        seed = seed_table(schema, name, columns)
        check_statuses(src.execute(seed_statuses_select(seed, columns)).scalars(), mapping)
        for chunk in _seed_rows(src, seed_select(seed, columns), chunk_size):
            counts.read += len(chunk)
            rows = []
            for seed_row in chunk:
                row = registry_row(seed_row, mapping, default_district, now, source_table)
                if isinstance(row, str):
                    counts.skipped[row] += 1
                    if len(counts.skipped_keys) < 5:
                        counts.skipped_keys.append(seed_row.key)
                else:
                    rows.append(row)
            unique = furthest_per_key(rows)
            counts.skipped["duplicate"] += len(rows) - len(unique)
            with target.begin() as conn:
                write_chunk(conn, tables, unique, counts)
    counts.skipped = +counts.skipped  # drop zero counts
    return counts
