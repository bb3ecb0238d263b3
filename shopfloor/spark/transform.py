"""Read one month through JDBC and shape it: good readings only, timestamp, value, tag."""

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, StringType, StructField, StructType

from shopfloor.historian.plan import MonthSlice, TableRead
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


def read_month(spark: SparkSession, source: JdbcSource, dbtable: str,
               month: MonthSlice | TableRead, tag_ids: list[int], good_quality: list[int],
               num_partitions: int, fetch_size: int = 10_000) -> DataFrame:
    """The rows of one table of the month (``month``: a slice, or one of its reads),
    read as ``num_partitions`` bounded ranges of ``t_stamp``.

    Each range is one JDBC query (``t_stamp >= lo AND t_stamp < hi``, cut at UTC
    midnights); the quality codes and (up to 1,000) tag ids are pushed down to the
    database into the WHERE clause of every range query as well.
    """
    properties = {**source.options(), "fetchsize": str(fetch_size),
                  "customSchema": CUSTOM_SCHEMA}
    url = properties.pop("url")
    # the bounds are integers computed here, never text from a parameter
    predicates = [f"t_stamp >= {int(lo)} AND t_stamp < {int(hi)}"
                  for lo, hi in month.day_ranges(num_partitions)]
    raw = spark.read.jdbc(url, dbtable, predicates=predicates, properties=properties)
    cond = F.col("dataintegrity").isin(good_quality)
    if len(tag_ids) <= MAX_PUSHED_TAG_IDS:
        cond = cond & F.col("tagid").isin(tag_ids)
    return raw.where(cond)


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
