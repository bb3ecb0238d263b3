"""Metadata for every table of DESIGN.md, optionally inside a schema (e.g. ``flet_montrg``)."""

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
    String,
    Table,
    Text,
    UniqueConstraint,
)

from shopfloor.db.types import UtcDateTime
from shopfloor.identifiers import check_identifier, check_optional_identifier
from shopfloor.settings import db_schema

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

    @property
    def schema(self) -> str | None:
        return self.metadata.schema


def _sensor_columns() -> list[Column]:
    return [Column(c, Float(53)) for c in ("temperature", "humidity", "pcv_temperature")]


def _hourly_columns() -> list[Column]:
    return [
        Column(f"{measure}_{agg}", Float(53))
        for measure in ("temperature", "humidity", "pcv_temperature")
        for agg in ("max", "avg")
    ]


def _threshold_columns() -> list[Column]:
    return [
        Column(f"{measure}_{bound}", Float(53))
        for measure in ("temperature", "humidity", "pcv_temperature")
        for bound in ("min", "max")
    ]


def _build(schema: str | None) -> Tables:
    md = MetaData(schema=schema)
    raw = Table(
        "temperature_raw", md,
        Column("loc_id", String(32), primary_key=True),
        Column("capture_dt", UtcDateTime, primary_key=True),
        *_sensor_columns(),
        Column("device", String(128)),
        Column("ingested_at", UtcDateTime, nullable=False),
        Index("ix_temperature_raw_capture_dt", "capture_dt"),
        Index("ix_temperature_raw_ingested_at", "ingested_at"),
    )
    hourly = Table(
        "temperature_hourly", md,
        Column("loc_id", String(32), primary_key=True),
        Column("ymd", String(8), primary_key=True),
        Column("hh", String(2), primary_key=True),
        *_hourly_columns(),
        Column("sample_count", Integer, nullable=False),
        Column("updated_at", UtcDateTime, nullable=False),
    )
    location = Table(
        "location", md,
        Column("loc_id", String(32), primary_key=True),
        Column("name", String(255)),
        Column("site", String(255)),
        *_threshold_columns(),
        Column("active", Boolean, nullable=False, default=True),
        Column("updated_at", UtcDateTime),
    )
    quarantine = Table(
        "quarantine", md,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
               autoincrement=True),
        Column("source", String(255), nullable=False),
        Column("record", Text, nullable=False),
        Column("reasons", Text, nullable=False),
        Column("run_id", String(64)),
        Column("quarantined_at", UtcDateTime, nullable=False),
        Index("ix_quarantine_source", "source"),
    )
    s3_object = Table(
        "s3_object", md,
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
        UniqueConstraint("key_hash", name="uq_s3_object_key_hash"),
        Index("ix_s3_object_claim", "distrik", "compression_status"),
    )
    watermark = Table(
        "pipeline_watermark", md,
        Column("name", String(128), primary_key=True),
        Column("value", String(64), nullable=False),
        Column("updated_at", UtcDateTime, nullable=False),
    )
    sqlth_te = Table(
        "sqlth_te", md,
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
        "s3_listing", md,
        Column("id_hash", String(64), primary_key=True),
        Column("storage", String(1024), nullable=False),
        Column("stream", String(1024), nullable=False),
        Column("last_key", String(1024), nullable=False),
        Column("updated_at", UtcDateTime, nullable=False),
    )
    # Findings of the anomaly detectors (shopfloor/anomaly, docs/anomalies.md): one row per
    # finding, unique so that a rerun inserts (and announces) nothing twice.
    anomaly = Table(
        "anomaly", md,
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
        UniqueConstraint("kind", "loc_id", "measure", "hour_start", name="uq_anomaly_finding"),
        Index("ix_anomaly_hour_start", "hour_start"),
    )
    return Tables(md, raw, hourly, location, quarantine, s3_object, watermark, sqlth_te,
                  s3_listing, anomaly)


@lru_cache(maxsize=16)
def get_tables(schema: str | None = None) -> Tables:
    """The tables of DESIGN.md in ``schema`` (``None``: the connection's default schema)."""
    return _build(check_optional_identifier(schema, "schema"))


def configured_tables() -> Tables:
    """The tables in the configured schema (``$SHOPFLOOR_DB_SCHEMA``, read at call time)."""
    return get_tables(db_schema())


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
