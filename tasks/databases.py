"""Table creation and checks in the databases the blocks point at (`shopfloor db init`,
`shopfloor db check`, the demo)."""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine

from blocks.bootstrap import DB_BLOCKS
from shopfloor.db.check import TableReport, compare, format_report, reflect, upgrade
from shopfloor.db.engine import check_connection, init_db, make_engine, only_tables
from shopfloor.db.schema import Tables, configured_tables
from shopfloor.db.urls import display_url
from shopfloor.identifiers import check_optional_identifier
from shopfloor.tags.migrate import migrate_raw
from tasks.runtime import engine as block_engine


@dataclass(frozen=True)
class CheckResult:
    """The reports of one database."""

    name: str
    url: str
    reports: list[TableReport]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.reports)

    def lines(self) -> list[str]:
        return [f"{self.name}: {self.url}", *format_report(self.reports)]


def _targets(block: str | None, url: str | None,
             schema: str | None) -> tuple[Tables, Iterator[tuple[str, Engine]]]:
    """The configured tables and a connected engine per database (``url`` or ``block``,
    else every database block; blocks that point at the same database count once)."""
    check_optional_identifier(schema, "schema")  # before any connection is opened
    tables = configured_tables(schema)  # names and settings are checked here too
    if url:
        targets = {"--url": make_engine(url)}  # a URL given by hand: this command's own
    else:
        # Blocks naming the same database (URL and connect_args) share one engine.
        by_engine: dict[Engine, str] = {}
        for name in [block] if block else list(DB_BLOCKS):
            by_engine.setdefault(block_engine(name), name)
        targets = {name: engine for engine, name in by_engine.items()}

    def engines() -> Iterator[tuple[str, Engine]]:
        for name, engine in targets.items():
            try:
                check_connection(engine, name)
                yield name, engine
            finally:
                if url:
                    engine.dispose()
    return tables, engines()


MIGRATED = ("temperature_raw", "tags", "tag_samples")


def migrates(only: Sequence[str] | None) -> bool:
    """Whether ``--upgrade`` of these tables moves raw readings into tag samples: all
    tables, or a list naming the raw table and both tag tables."""
    return only is None or set(MIGRATED) <= set(only)


def init_databases(block: str | None = None, url: str | None = None,
                   schema: str | None = None, add_columns: bool = False,
                   only: Sequence[str] | None = None) -> Iterator[str]:
    """Create the missing tables in one database (``url`` or ``block``) or in every
    database block; with ``add_columns``, also add the missing columns to existing tables
    (never dropping or changing anything else) and say which, then copy the readings of
    ``temperature_raw`` into ``tag_samples`` (:func:`~shopfloor.tags.migrate.migrate_raw`)
    and say how many. ``only``: these table keys.
    """
    tables, engines = _targets(block, url, schema)
    count = len(only_tables(tables, only))  # an unknown key fails before any connection
    for name, engine in engines:
        init_db(engine, tables=tables, only=only)
        shown = display_url(engine.url)
        yield f"{name:<24} {shown}: {count} tables ready"
        if add_columns:
            with engine.begin() as conn:
                reports = compare(tables, reflect(conn, tables, only), only)
                added = upgrade(conn, tables, reports)
            yield from (f"{name:<24} added: {ddl}" for ddl in added)
            if not added:
                yield f"{name:<24} no column missing"
            if migrates(only):
                report = migrate_raw(engine, tables)
                yield from (f"{name:<24} {line}" for line in report.lines())


def check_databases(block: str | None = None, url: str | None = None,
                    schema: str | None = None,
                    only: Sequence[str] | None = None) -> Iterator[CheckResult]:
    """Compare the configured tables with one database or every database block,
    changing nothing."""
    tables, engines = _targets(block, url, schema)
    compare(tables, {}, only)  # an unknown table key fails before any connection
    for name, engine in engines:
        with engine.connect() as conn:
            reports = compare(tables, reflect(conn, tables, only), only)
        yield CheckResult(name, display_url(engine.url), reports)
