"""The Spark session for the extraction: settings, driver jars, reuse of a running session."""

import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from shopfloor.spark.jars import jar_conf

log = logging.getLogger(__name__)

# AQE and skew-join handling on; UTC so that dates are UTC dates; Parquet timestamps as
# plain microseconds (INT96 is Spark's legacy default and other readers dislike it).
DEFAULT_CONF = {
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.adaptive.skewJoin.enabled": "true",
    "spark.sql.adaptive.coalescePartitions.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.ui.showConsoleProgress": "false",
    "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
}


def session_conf(kind: str, spark_conf: Mapping[str, str],
                 env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Defaults, then the JDBC jars for ``kind``, then the user's settings (they win)."""
    env = os.environ if env is None else env
    conf = dict(DEFAULT_CONF)
    conf.update(jar_conf(kind, spark_conf, env))
    conf.update(spark_conf)
    return conf


def local_worker_python(master: str, env: Mapping[str, str]) -> str | None:
    """The Python the workers should run in local mode: this interpreter.

    PySpark starts workers with ``$PYSPARK_PYTHON`` or else the system's ``python3``,
    which may lack pyarrow (needed by ``mapInArrow``). On a cluster the executors'
    own Python is kept.
    """
    if master.startswith("local") and not env.get("PYSPARK_PYTHON"):
        return sys.executable
    return None


@contextmanager
def spark_session(master: str, conf: Mapping[str, str],
                  app_name: str = "shopfloor-spark-extraction") -> Iterator:
    """A SparkSession for ``master``; stopped at the end only if this call started it.

    A session already running in the process (a test session, a notebook) is reused
    as it is: its master and static settings such as ``spark.jars`` cannot change, so
    only settings that may change at runtime are applied to it.
    """
    from pyspark.sql import SparkSession

    existing = SparkSession.getActiveSession() or SparkSession._instantiatedSession
    if existing is not None:
        for key, value in conf.items():
            if key.startswith("spark.sql."):
                _set_runtime(existing, key, value)
        yield existing
        return
    worker_python = local_worker_python(master, os.environ)
    if worker_python:
        os.environ["PYSPARK_PYTHON"] = worker_python
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    try:
        yield spark
    finally:
        spark.stop()


def _set_runtime(spark, key: str, value: str) -> None:
    try:
        spark.conf.set(key, value)
    except Exception as exc:  # a static setting: keep the running session's value
        log.warning("cannot change %s on the running Spark session: %s", key, exc)


def has_s3a(spark) -> bool:
    """True when hadoop-aws (``S3AFileSystem``) is on the driver's classpath."""
    try:
        spark.sparkContext._jvm.java.lang.Class.forName(
            "org.apache.hadoop.fs.s3a.S3AFileSystem")
        return True
    except Exception:  # py4j wraps ClassNotFoundException; Spark Connect has no JVM
        return False
