"""Read one month through JDBC and shape it: good readings only, timestamp, value, tag."""

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, StringType, StructField, StructType

from shopfloor.historian.plan import MonthSlice
from shopfloor.historian.tags import Tag
from shopfloor.spark.jdbc import CUSTOM_SCHEMA, JdbcSource

# Above this many tag ids the IN list is not pushed down; the broadcast join filters.
MAX_PUSHED_TAG_IDS = 1000
PARTITION_COLUMNS = ("tag", "date")
OUTPUT_COLUMNS = ("tagid", "tagpath", "ts", "value", "dataintegrity", *PARTITION_COLUMNS)
TAG_SCHEMA = StructType([
    StructField("tagid", IntegerType(), False),
    StructField("tagpath", StringType(), False),
    StructField("tag", StringType(), False),
])


def read_month(spark: SparkSession, source: JdbcSource, dbtable: str, month: MonthSlice,
               tag_ids: list[int], good_quality: list[int], num_partitions: int,
               fetch_size: int = 10_000) -> DataFrame:
    """The month's rows, read in ``num_partitions`` bounded ranges of ``t_stamp``.

    The time window, the quality codes and (up to 1,000) tag ids are pushed down to
    the database as the WHERE clause of every range query.
    """
    reader = (
        spark.read.format("jdbc")
        .option("dbtable", dbtable)
        .option("partitionColumn", "t_stamp")
        .option("lowerBound", str(month.start_ms))
        .option("upperBound", str(month.end_ms))
        .option("numPartitions", str(num_partitions))
        .option("fetchsize", str(fetch_size))
        .option("customSchema", CUSTOM_SCHEMA)
    )
    for key, value in source.options().items():
        reader = reader.option(key, value)
    cond = (
        (F.col("t_stamp") >= F.lit(month.start_ms))
        & (F.col("t_stamp") < F.lit(month.end_ms))
        & F.col("dataintegrity").isin(good_quality)
    )
    if len(tag_ids) <= MAX_PUSHED_TAG_IDS:
        cond = cond & F.col("tagid").isin(tag_ids)
    return reader.load().where(cond)


def tags_frame(spark: SparkSession, tags: list[Tag]) -> DataFrame:
    """The selected tags with their partition keys (computed in Python, one rule everywhere)."""
    return spark.createDataFrame([(t.id, t.tagpath, t.key) for t in tags], TAG_SCHEMA)


def shape_readings(raw: DataFrame, tags: DataFrame) -> DataFrame:
    """UTC timestamp from epoch ms, one numeric value, the tag joined (broadcast), the date.

    ``value`` is ``floatvalue`` when set, else ``intvalue`` as a double (string and
    date tags give null values).
    """
    return (
        raw.select(
            "tagid",
            F.timestamp_millis("t_stamp").alias("ts"),
            F.coalesce(F.col("floatvalue"), F.col("intvalue").cast("double")).alias("value"),
            "dataintegrity",
        )
        .join(F.broadcast(tags), "tagid")
        .withColumn("date", F.date_format("ts", "yyyy-MM-dd"))
        .select(*OUTPUT_COLUMNS)
    )
