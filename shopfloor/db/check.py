"""Compare the tables the flows need with what a database holds (`shopfloor db check`),
and add the missing columns to existing tables (`shopfloor db init --upgrade`).

The comparison is pure: :func:`reflect` turns a database into :class:`ActualTable`
values, :func:`compare` turns those and the configured :class:`~shopfloor.db.schema.Tables`
into one :class:`TableReport` per table. Nothing here drops or alters an existing column.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import (
    DDL,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    UniqueConstraint,
    inspect,
    literal,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from shopfloor.db.schema import Tables
from shopfloor.errors import UserError

# Reflected types come back as each dialect's own classes (TIMESTAMP, DATETIME2, BIT,
# NUMERIC); the flows only care about the family. Order matters: Boolean before
# Integer (SQL Server's BIT), Float before Numeric (Float is a Numeric).
_FAMILIES: tuple[tuple[type, str], ...] = (
    (Boolean, "boolean"), (DateTime, "datetime"), (Date, "date"), (Integer, "integer"),
    (Float, "number"), (Numeric, "number"), (String, "string"), (LargeBinary, "binary"),
)
# What a database may hold for an expected family and still work: MySQL has no boolean
# (TINYINT), and an integer column holds whole numbers a float column would.
_COMPATIBLE = {"boolean": {"integer"}}


def type_family(type_: TypeEngine) -> str:
    """``string``, ``integer``, ``number``, ``datetime``, ``boolean``... of a column type."""
    if isinstance(type_, TypeDecorator):
        type_ = type_.impl_instance
    for cls, family in _FAMILIES:
        if isinstance(type_, cls):
            return family
    return "other"


@dataclass(frozen=True)
class ActualColumn:
    """A column as the database has it."""

    name: str
    family: str
    nullable: bool = True
    has_default: bool = False
    length: int | None = None
    type_name: str = ""


@dataclass(frozen=True)
class ActualTable:
    """A table as the database has it: columns by lower-case name, and every set of
    columns that is unique (primary key, unique constraints, unique indexes)."""

    name: str
    columns: Mapping[str, ActualColumn]
    keys: frozenset[frozenset[str]] = frozenset()
    view: bool = False


@dataclass(frozen=True)
class Finding:
    """One thing about a table: ``error`` (a flow will fail) or ``warning``."""

    level: str
    kind: str  # "missing table" | "missing column" | "key" | "type" | "nullable" | "length"
    message: str
    column: str | None = None


@dataclass
class TableReport:
    """How one configured table compares with the database."""

    key: str
    name: str
    present: bool
    needed: int
    found: int
    findings: list[Finding] = field(default_factory=list)
    addable: list[str] = field(default_factory=list)
    """Missing columns ``db init --upgrade`` can add (not part of a key)."""

    @property
    def ok(self) -> bool:
        return not any(f.level == "error" for f in self.findings)

    @property
    def status(self) -> str:
        if not self.present:
            return "MISSING"
        if not self.ok:
            return "INCOMPLETE"
        return "differs" if self.findings else "ok"


def expected_keys(table: Table) -> list[frozenset[str]]:
    """The column sets the flows rely on being unique (their upserts' conflict keys)."""
    keys = []
    if table.primary_key.columns:
        keys.append(frozenset(c.name for c in table.primary_key.columns))
    keys += [frozenset(c.name for c in con.columns) for con in table.constraints
             if isinstance(con, UniqueConstraint)]
    return keys


def _column_findings(column: Column, actual: ActualColumn) -> list[Finding]:
    out = []
    want = type_family(column.type)
    if actual.family != want and actual.family not in _COMPATIBLE.get(want, ()):
        out.append(Finding("warning", "type", f"column {column.name}: {actual.type_name} "
                           f"({actual.family}) where the flows write {want}", column.name))
    length = getattr(column.type, "length", None)
    if want == "string" and length and actual.length and actual.length < length:
        out.append(Finding("warning", "length", f"column {column.name}: {actual.type_name} is "
                           f"shorter than the flows' {length} characters", column.name))
    if column.nullable and not actual.nullable and not actual.has_default:
        out.append(Finding("warning", "nullable", f"column {column.name} is NOT NULL without "
                           "a default: the flows may write NULL into it", column.name))
    return out


def compare_table(key: str, table: Table, actual: ActualTable | None) -> TableReport:
    """Compare one configured table with the database's (``None``: the table is absent)."""
    needed = len(table.columns)
    if actual is None:
        return TableReport(key, table.fullname, False, needed, 0, [Finding(
            "error", "missing table", f"table {table.fullname} does not exist "
            "(`shopfloor db init` creates it)")])
    report = TableReport(key, table.fullname, True, needed, 0)
    in_keys = {c for k in expected_keys(table) for c in k}
    for column in table.columns:
        found = actual.columns.get(column.name.lower())
        if found is None:
            addable = column.name not in in_keys
            hint = ("add it to the view" if actual.view
                    else "`shopfloor db init --upgrade` adds it" if addable
                    else "part of a key: add it by hand")
            report.findings.append(Finding("error", "missing column", f"column {column.name} "
                                           f"({type_family(column.type)}) is missing: {hint}",
                                           column.name))
            if addable:
                report.addable.append(column.name)
            continue
        report.found += 1
        report.findings += _column_findings(column, found)
    for wanted in expected_keys(table):
        if frozenset(c.lower() for c in wanted) not in actual.keys:
            cols = ", ".join(c.name for c in table.columns if c.name in wanted)
            # A view (e.g. over the seed's raw table, renaming its columns) has no keys
            # and is only read: fine for the flows that read it, not for a writer.
            level, why = (("warning", "a view: the flows can read it, not write it")
                          if actual.view else ("error", "the flows' upserts need one"))
            report.findings.append(Finding(level, "key", f"no primary key or unique key on "
                                           f"({cols}): {why}"))
    if actual.view:
        report.addable = []  # never ALTER a view
    return report


def compare(tables: Tables, actual: Mapping[str, ActualTable],
            only: Sequence[str] | None = None) -> list[TableReport]:
    """One report per table the flows need (``only``: these table keys), in key order.

    ``actual`` maps lower-case table names (without schema) to what the database holds.
    """
    by_key = tables.by_key()
    keys = list(only) if only else list(by_key)
    unknown = [k for k in keys if k not in by_key]
    if unknown:
        raise UserError(f"unknown table {unknown[0]!r}: one of {', '.join(by_key)}")
    return [compare_table(k, by_key[k], actual.get(by_key[k].name.lower())) for k in keys]


def _actual_column(info: Mapping) -> ActualColumn:
    type_ = info["type"]
    return ActualColumn(info["name"], type_family(type_), bool(info.get("nullable", True)),
                        info.get("default") is not None, getattr(type_, "length", None),
                        str(type_))


def reflect(conn: Connection, tables: Tables, only: Sequence[str] | None = None
            ) -> dict[str, ActualTable]:
    """What the database holds of the configured tables (absent ones are left out)."""
    insp, schema = inspect(conn), tables.schema
    views = {v.lower() for v in insp.get_view_names(schema=schema)}
    out = {}
    for key, table in tables.by_key().items():
        if only and key not in only or not insp.has_table(table.name, schema=schema):
            continue
        columns = {c["name"].lower(): _actual_column(c)
                   for c in insp.get_columns(table.name, schema=schema)}
        keys = [insp.get_pk_constraint(table.name, schema=schema).get("constrained_columns")]
        keys += [u["column_names"] for u in insp.get_unique_constraints(table.name, schema=schema)]
        keys += [i["column_names"] for i in insp.get_indexes(table.name, schema=schema)
                 if i.get("unique")]
        out[table.name.lower()] = ActualTable(table.name, columns, frozenset(
            frozenset(c.lower() for c in k if c) for k in keys if k),
            view=table.name.lower() in views)
    return out


def format_report(reports: Iterable[TableReport]) -> list[str]:
    """A readable table: one line per table, then its findings indented."""
    reports = list(reports)
    width = max([len(r.name) for r in reports] + [5])
    lines = [f"{'table':<20} {'in the database':<{width}}  {'status':<10} columns"]
    for r in reports:
        lines.append(f"{r.key:<20} {r.name:<{width}}  {r.status:<10} {r.found}/{r.needed}")
        lines += [f"    {f.level}: {f.message}" for f in r.findings]
    bad = [r.key for r in reports if not r.ok]
    lines.append(f"{len(reports) - len(bad)} of {len(reports)} tables usable" +
                 (f"; fix: {', '.join(bad)}" if bad else ""))
    return lines


def added_column(column: Column, dialect: Dialect) -> Column:
    """The column as ``--upgrade`` adds it: nullable, unless the flows give it a default
    (``attempts`` 0, ``compression_status`` 'PENDING'), which existing rows then take."""
    default = column.default.arg if column.default is not None and column.default.is_scalar \
        else None
    if default is None:
        return Column(column.name, column.type, nullable=True)
    value = literal(default, column.type).compile(dialect=dialect,
                                                  compile_kwargs={"literal_binds": True})
    return Column(column.name, column.type, nullable=column.nullable,
                  server_default=text(str(value)))


def add_column_ddl(table: Table, column: Column, dialect: Dialect) -> str:
    """``ALTER TABLE <table> ADD <column spec>`` for ``dialect`` (``ADD`` without
    ``COLUMN``: the one form SQL Server, PostgreSQL, MySQL and SQLite all accept)."""
    col = added_column(column, dialect)
    Table(table.name, MetaData(schema=table.schema), col)  # the compiler wants a table
    spec = dialect.ddl_compiler(dialect, None).get_column_specification(col)
    return f"ALTER TABLE {dialect.identifier_preparer.format_table(table)} ADD {spec}"


def upgrade(conn: Connection, tables: Tables, reports: Iterable[TableReport]) -> list[str]:
    """Add every addable missing column of the reports, then every index the metadata
    names that the table lacks (by name); returns what was done."""
    by_key, done = tables.by_key(), []
    for report in reports:
        table = by_key[report.key]
        for name in report.addable:
            ddl = add_column_ddl(table, table.c[name], conn.dialect)
            conn.execute(DDL(ddl))
            done.append(ddl)
        done += add_missing_indexes(conn, table)
    return done


def add_missing_columns(conn: Connection, table: Table) -> list[str]:
    """Add the columns of ``table``'s metadata that the database's table lacks, as
    ``--upgrade`` adds them (:func:`added_column`), for a table the flows create
    themselves (not among :class:`~shopfloor.db.schema.Tables`); returns the DDL run.
    A missing key column is not added (the table would need rebuilding): it raises."""
    have = {c["name"].lower() for c in inspect(conn).get_columns(table.name,
                                                                 schema=table.schema)}
    done = []
    for column in table.columns:
        if column.name.lower() in have:
            continue
        if column.primary_key:
            raise UserError(f"table {table.fullname} lacks its key column {column.name}: "
                            "add it by hand")
        ddl = add_column_ddl(table, column, conn.dialect)
        conn.execute(DDL(ddl))
        done.append(ddl)
    return done


def add_missing_indexes(conn: Connection, table: Table) -> list[str]:
    """Create the indexes of ``table``'s metadata that the database lacks (by name)."""
    insp = inspect(conn)
    if not insp.has_table(table.name, schema=table.schema):
        return []
    have = {i["name"] for i in insp.get_indexes(table.name, schema=table.schema)}
    done = []
    for index in sorted(table.indexes, key=lambda i: str(i.name)):
        if index.name not in have and all(c.name in table.c for c in index.columns):
            index.create(conn)
            done.append(f"CREATE INDEX {index.name} ON {table.name}")
    return done
