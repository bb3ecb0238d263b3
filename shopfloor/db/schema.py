"""Metadata for every table of DESIGN.md, optionally inside a schema (e.g. ``flet_montrg``).

Each table can carry another name (an existing database's, e.g. the seed's hourly table
``temperature``), and the raw table can be one without ``ingested_at``. Index and
constraint names derive from the configured table name, so two configurations in one
schema never clash.
"""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from shopfloor.db.types import UtcDateTime
from shopfloor.errors import UserError
from shopfloor.identifiers import check_identifier, check_optional_identifier
from shopfloor.settings import TABLE_KEYS, db_schema, raw_has_ingested_at, table_names

S3_STATUSES = ("PENDING", "CLAIMED", "SUCCESS", "FAILED", "QUARANTINED")


@dataclass(frozen=True)
class Tables:
    """The tables of one schema, bound to one ``MetaData``."""

    metadata: MetaData
    temperature_raw: Table
    temperature_hourly: Table
    location: Table
    quarantine: Table
    s3_object: Table
    pipeline_watermark: Table
    sqlth_te: Table
    s3_listing: Table
    anomaly: Table
    quality_score: Table
    temperature_daily: Table
    collector_backlog: Table
    tags: Table
    tag_samples: Table
    tag_hourly: Table
    tag_daily: Table

    @property
    def schema(self) -> str | None:
        return self.metadata.schema

    @property
    def raw_has_ingested_at(self) -> bool:
        """False for a raw table without ``ingested_at`` (late data by ``capture_dt``)."""
        return "ingested_at" in self.temperature_raw.c

    def by_key(self) -> dict[str, Table]:
        """Every table by the name the code knows it as (``TABLE_KEYS``)."""
        return {key: getattr(self, key) for key in TABLE_KEYS}


def constraint_name(prefix: str, table: str, suffix: str) -> str:
    """``{prefix}_{table}_{suffix}``, cut to 63 characters (PostgreSQL's limit) with a
    hash of the full name, so long table names keep distinct index names."""
    name = f"{prefix}_{table}_{suffix}"
    if len(name) <= 63:
        return name
    return f"{name[:54]}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def _sensor_columns() -> list[Column]:
    return [Column(c, Float(53)) for c in ("temperature", "humidity", "pcv_temperature")]


def _hourly_columns() -> list[Column]:
    return [
        Column(f"{measure}_{agg}", Float(53))
        for measure in ("temperature", "humidity", "pcv_temperature")
        for agg in ("max", "avg")
    ]


def _rollup_columns() -> list[Column]:
    """What makes hourly rows roll up exactly (days, months): per measure the count of
    non-null samples, their sum and min (max is a value column). Nullable, so
    ``db init --upgrade`` adds them to an existing hourly table."""
    return [
        Column(f"{measure}_{agg}", Integer if agg == "count" else Float(53))
        for measure in ("temperature", "humidity", "pcv_temperature")
        for agg in ("count", "sum", "min")
    ]


def _daily_columns() -> list[Column]:
    return [
        Column(f"{measure}_{agg}", Integer if agg == "count" else Float(53))
        for measure in ("temperature", "humidity", "pcv_temperature")
        for agg in ("count", "sum", "min", "max", "avg")
    ]


def _threshold_columns() -> list[Column]:
    return [
        Column(f"{measure}_{bound}", Float(53))
        for measure in ("temperature", "humidity", "pcv_temperature")
        for bound in ("min", "max")
    ]


def _raw_table(md: MetaData, name: str, ingested_at: bool) -> Table:
    extra: list = [Column("ingested_at", UtcDateTime, nullable=False),
                   Index(constraint_name("ix", name, "ingested_at"), "ingested_at")]
    return Table(
        name, md,
        Column("loc_id", String(32), primary_key=True),
        Column("capture_dt", UtcDateTime, primary_key=True),
        *_sensor_columns(),
        Column("device", String(128)),
        Index(constraint_name("ix", name, "capture_dt"), "capture_dt"),
        *(extra if ingested_at else []),
    )


def _build(schema: str | None, names: Mapping[str, str], raw_ingested_at: bool) -> Tables:
    md = MetaData(schema=schema)
    n = {key: names.get(key, key) for key in TABLE_KEYS}
    raw = _raw_table(md, n["temperature_raw"], raw_ingested_at)
    hourly = Table(
        n["temperature_hourly"], md,
        Column("loc_id", String(32), primary_key=True),
        Column("ymd", String(8), primary_key=True),
        Column("hh", String(2), primary_key=True),
        *_hourly_columns(),
        Column("sample_count", Integer, nullable=False),
        Column("updated_at", UtcDateTime, nullable=False),
        *_rollup_columns(),
        # A window of hours over every location (the aggregation's stale-rows check,
        # the daily rollups): the primary key leads with loc_id and cannot serve it.
        Index(constraint_name("ix", n["temperature_hourly"], "ymd_hh"), "ymd", "hh"),
    )
    location = Table(
        n["location"], md,
        Column("loc_id", String(32), primary_key=True),
        Column("name", String(255)),
        Column("site", String(255)),
        *_threshold_columns(),
        Column("active", Boolean, nullable=False, default=True),
        Column("updated_at", UtcDateTime),
    )
    quarantine = Table(
        n["quarantine"], md,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
               autoincrement=True),
        Column("source", String(255), nullable=False),
        Column("record", Text, nullable=False),
        Column("reasons", Text, nullable=False),
        Column("run_id", String(64)),
        Column("quarantined_at", UtcDateTime, nullable=False),
        # Where a record of landed raw data came from: the object key and its 1-based
        # line (nullable: rows of readings never landed, and tables before the upgrade).
        Column("source_key", String(1024)),
        Column("source_line", Integer),
        Index(constraint_name("ix", n["quarantine"], "source"), "source"),
        # A forwarder's replay replaces the recent rows of a source (quality.write_quarantine).
        Index(constraint_name("ix", n["quarantine"], "source_at"), "source", "quarantined_at"),
    )
    s3_object = Table(
        n["s3_object"], md,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
               autoincrement=True),
        # Keys reach 1024 bytes, past the index-key limits of MySQL and SQL Server,
        # so uniqueness is enforced on a SHA-256 of the key instead.
        Column("key", String(1024), nullable=False),
        Column("key_hash", String(64), nullable=False),
        Column("distrik", String(32), nullable=False),
        Column("size", BigInteger),
        Column("discovered_at", UtcDateTime, nullable=False),
        Column("compression_run_id", String(64)),
        Column("claimed_at", UtcDateTime),
        Column("compression_status", String(16), nullable=False, default="PENDING"),
        Column("attempts", Integer, nullable=False, default=0),
        Column("error", Text),
        Column("completed_at", UtcDateTime),
        UniqueConstraint("key_hash", name=constraint_name("uq", n["s3_object"], "key_hash")),
        Index(constraint_name("ix", n["s3_object"], "claim"), "distrik", "compression_status"),
    )
    watermark = Table(
        n["pipeline_watermark"], md,
        Column("name", String(128), primary_key=True),
        Column("value", String(64), nullable=False),
        Column("updated_at", UtcDateTime, nullable=False),
    )
    sqlth_te = Table(
        n["sqlth_te"], md,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("tagpath", String(255), nullable=False),
        Column("datatype", Integer),
        Column("created", BigInteger),
        Column("retired", BigInteger),
    )
    # Where registration's last listing of each stream (a folder of hour folders) ended,
    # so the next one lists only from there (shopfloor/compaction/listing.py). Keys and
    # storage URLs outgrow index limits: the primary key is a SHA-256 of both.
    s3_listing = Table(
        n["s3_listing"], md,
        Column("id_hash", String(64), primary_key=True),
        Column("storage", String(1024), nullable=False),
        Column("stream", String(1024), nullable=False),
        Column("last_key", String(1024), nullable=False),
        Column("updated_at", UtcDateTime, nullable=False),
    )
    # Findings of the anomaly detectors (shopfloor/anomaly, docs/anomalies.md): one row per
    # finding, unique so that a rerun inserts (and announces) nothing twice.
    anomaly = Table(
        n["anomaly"], md,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
               autoincrement=True),
        Column("kind", String(16), nullable=False),
        Column("loc_id", String(32), nullable=False),
        Column("measure", String(32), nullable=False),
        Column("hour_start", UtcDateTime, nullable=False),
        Column("hours", Integer, nullable=False, default=1),
        Column("score", Float(53)),
        Column("detail", Text),
        Column("run_id", String(64)),
        Column("detected_at", UtcDateTime, nullable=False),
        UniqueConstraint("kind", "loc_id", "measure", "hour_start",
                         name=constraint_name("uq", n["anomaly"], "finding")),
        Index(constraint_name("ix", n["anomaly"], "hour_start"), "hour_start"),
    )
    # One quality row per batch of every flow (shopfloor/quality.py, docs/aggregation.md),
    # written in the transaction of the data it describes.
    quality = Table(
        n["quality_score"], md,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
               autoincrement=True),
        Column("flow", String(64), nullable=False),
        Column("subject", String(255), nullable=False),
        Column("window_start", UtcDateTime),
        Column("window_end", UtcDateTime),
        *(Column(d, Float(53)) for d in ("completeness", "validity", "uniqueness",
                                           "timeliness", "overall")),
        *(Column(c, Integer) for c in ("rows_in", "rows_valid", "rows_quarantined",
                                        "rows_duplicate")),
        Column("expected", Integer),
        Column("rule_version", String(32)),
        Column("run_id", String(64)),
        Column("recorded_at", UtcDateTime, nullable=False),
        Index(constraint_name("ix", n["quality_score"], "flow_recorded"), "flow",
              "recorded_at"),
    )
    # The daily rollup in the plant's local time zone: kept current from the hourly rows
    # of the days each hourly write touches (shopfloor/aggregation/daily.py).
    daily = Table(
        n["temperature_daily"], md,
        Column("loc_id", String(32), primary_key=True),
        Column("ymd", String(8), primary_key=True),
        *_daily_columns(),
        Column("hours", Integer, nullable=False),
        Column("sample_count", Integer, nullable=False),
        Column("updated_at", UtcDateTime, nullable=False),
    )
    # What each collector's store-and-forward buffer still holds per sink, reported by
    # the capture's forwarders after every pass (shopfloor/buffer/status.py): the buffer
    # itself is on the collector's disk, out of the dashboard's reach.
    backlog = Table(
        n["collector_backlog"], md,
        Column("collector", String(128), primary_key=True),
        Column("sink", String(255), primary_key=True),
        Column("backlog_samples", BigInteger, nullable=False),
        Column("oldest_sample_at", UtcDateTime),  # None: nothing waiting
        Column("dropped_samples", BigInteger, nullable=False),  # by the limits, ever
        Column("buffer_fill_pct", Float(53), nullable=False),
        Column("reported_at", UtcDateTime, nullable=False),
    )
    tags, samples = _tag_tables(md, n)
    return Tables(md, raw, hourly, location, quarantine, s3_object, watermark, sqlth_te,
                  s3_listing, anomaly, quality, daily, backlog, tags, samples,
                  _tag_rollup_table(md, n["tag_hourly"]),
                  _tag_rollup_table(md, n["tag_daily"], hours=True))


def _tag_tables(md: MetaData, n: Mapping[str, str]) -> tuple[Table, Table]:
    """The tag registry and the narrow samples (docs/tags.md): one row per tag, and one
    per tag and time with its value and its quality."""
    tags = Table(
        n["tags"], md,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
               autoincrement=True),
        Column("name", String(128), nullable=False),
        Column("device", String(128), nullable=False),
        Column("location", String(32)),
        Column("unit", String(32)),
        Column("data_type", String(16), nullable=False),
        Column("description", Text),
        # What the source calls it: a Modbus register ("holding:100", "input:7.3").
        Column("source_name", String(255)),
        Column("updated_at", UtcDateTime, nullable=False),
        UniqueConstraint("device", "name", name=constraint_name("uq", n["tags"], "device_name")),
    )
    # No foreign key to tags: samples go in by COPY in bulk, their ids come from the
    # registry, and a key check per row would cost the bulk path its speed.
    samples = Table(
        n["tag_samples"], md,
        Column("tag_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
               autoincrement=False),
        Column("ts", UtcDateTime, primary_key=True),
        Column("value", Float(53)),  # numbers, booleans as 0/1; NULL for text or no value
        Column("text_value", Text),  # strings (and states named by text)
        Column("quality", SmallInteger, nullable=False),  # 192 good, 64 uncertain, 0 bad
        Column("reason", String(255)),  # why a point is not good; NULL when it is
        Column("ingested_at", UtcDateTime, nullable=False),
        # Late data (rows ingested since a watermark, whatever their time), as for raw.
        Index(constraint_name("ix", n["tag_samples"], "ingested_at"), "ingested_at"),
    )
    return tags, samples


def _tag_rollup_table(md: MetaData, name: str, hours: bool = False) -> Table:
    """``tag_hourly`` / ``tag_daily`` (docs/tags.md): per tag and UTC period, counts of
    all and of good points, and over the good numeric values their count, sum, min,
    max, avg and the first and last in time; everything a longer period needs to be
    rolled up exactly (sums of counts and sums, min of mins, first by earliest time)."""
    value = Float(53)
    return Table(
        name, md,
        Column("tag_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
               autoincrement=False),
        Column("period_start", UtcDateTime, primary_key=True),  # UTC hour or day
        Column("sample_count", BigInteger, nullable=False),  # every point, any quality
        Column("good_count", BigInteger, nullable=False),  # quality 192, text ones too
        Column("value_count", BigInteger, nullable=False),  # good points with a number
        Column("value_sum", value), Column("value_min", value), Column("value_max", value),
        Column("value_avg", value),
        Column("first_ts", UtcDateTime), Column("first_value", value),
        Column("last_ts", UtcDateTime), Column("last_value", value),
        *([Column("hours", Integer, nullable=False)] if hours else []),  # hourly rows
        Column("updated_at", UtcDateTime, nullable=False),
    )


@lru_cache(maxsize=32)
def _cached(schema: str | None, names: tuple[tuple[str, str], ...],
            raw_ingested_at: bool) -> Tables:
    return _build(schema, dict(names), raw_ingested_at)


def get_tables(schema: str | None = None, names: Mapping[str, str] | None = None,
               raw_ingested_at: bool = True) -> Tables:
    """The tables of DESIGN.md in ``schema`` (``None``: the connection's default schema).

    Args:
        schema: the schema of every table.
        names: table key (``TABLE_KEYS``) -> the name it has in the database; tables
            not listed keep their key as name.
        raw_ingested_at: False for a raw table without ``ingested_at``.
    """
    names = dict(names or {})
    unknown = sorted(set(names) - set(TABLE_KEYS))
    if unknown:
        raise UserError(f"unknown table {unknown[0]!r}: one of {', '.join(TABLE_KEYS)}")
    for key, name in names.items():
        check_identifier(name, f"table name for {key}")
    if len(set(names.values()) | (set(TABLE_KEYS) - set(names))) < len(TABLE_KEYS):
        raise UserError(f"two tables configured with one name: {names}")
    clean = tuple(sorted((k, v) for k, v in names.items() if k != v))
    return _cached(check_optional_identifier(schema, "schema"), clean, bool(raw_ingested_at))


def configured_tables(schema: str | None = None) -> Tables:
    """The tables as configured, read at call time: the schema (``$SHOPFLOOR_DB_SCHEMA``,
    or ``schema`` when given), the names (``$SHOPFLOOR_TABLE_<KEY>``) and whether the raw
    table has ``ingested_at`` (``$SHOPFLOOR_RAW_INGESTED_AT``)."""
    return get_tables(schema if schema is not None else db_schema(), table_names(),
                      raw_has_ingested_at())


def historian_data_table(tables: Tables, name: str) -> Table:
    """A monthly historian table ``sqlt_data_1_YYYY_MM`` (name checked strictly)."""
    check_identifier(name, "historian table")
    if name in tables.metadata.tables or (
        tables.schema and f"{tables.schema}.{name}" in tables.metadata.tables
    ):
        key = f"{tables.schema}.{name}" if tables.schema else name
        return tables.metadata.tables[key]
    return Table(
        name, tables.metadata,
        Column("tagid", Integer, nullable=False),
        Column("intvalue", BigInteger),
        Column("floatvalue", Float(53)),
        Column("stringvalue", String(255)),
        Column("datevalue", UtcDateTime),
        Column("dataintegrity", Integer),
        Column("t_stamp", BigInteger, nullable=False),
        Index(f"ix_{name}_tag_ts", "tagid", "t_stamp"),
        Index(f"ix_{name}_ts", "t_stamp"),
    )


@dataclass(frozen=True)
class HistorianCatalog:
    """Ignition's own catalog of the tag historian: which table holds which span of time
    for which driver (``sqlth_partitions``), the drivers (``sqlth_drv``) and the scan
    classes that tie a tag (``sqlth_te.scid``) to its driver (``sqlth_scinfo``).

    Kept out of :class:`Tables` and ``db init``: Ignition creates these tables, the
    flows only read them (the seeds create them for tests and the demo).
    """

    metadata: MetaData
    partitions: Table
    drv: Table
    scinfo: Table


@lru_cache(maxsize=8)
def historian_catalog(schema: str | None = None) -> HistorianCatalog:
    """The catalog tables in ``schema`` (their own ``MetaData``; Ignition's column names)."""
    md = MetaData(schema=check_optional_identifier(schema, "schema"))
    partitions = Table(
        "sqlth_partitions", md,
        Column("pname", String(255), nullable=False),
        Column("drvid", Integer),
        Column("start_time", BigInteger),  # epoch ms, inclusive
        Column("end_time", BigInteger),  # epoch ms, exclusive
        Column("blocksize", Integer),
        Column("flags", Integer),
    )
    drv = Table("sqlth_drv", md, Column("id", Integer, primary_key=True, autoincrement=False),
                Column("name", String(255)), Column("provider", String(255)))
    scinfo = Table("sqlth_scinfo", md,
                   Column("id", Integer, primary_key=True, autoincrement=False),
                   Column("scname", String(255)), Column("drvid", Integer))
    return HistorianCatalog(md, partitions, drv, scinfo)
