"""Build-time check of the image's dependencies (Dockerfile, dependencies stage).

After pruning, Spark in local mode must still write and read Parquet and read a table
through the Debian JDBC jars; the imports here also leave byte code for the modules a
flow run imports, and only for those (the rest of the packages stay uncompiled).
"""

import sqlite3
import tempfile
from pathlib import Path

import boto3  # noqa: F401
import duckdb  # noqa: F401
import pandas  # noqa: F401
import pandera  # noqa: F401
import prefect  # noqa: F401
import prefect.cli  # noqa: F401
import prefect_aws  # noqa: F401
import prefect_docker  # noqa: F401
import prefect_sqlalchemy  # noqa: F401
import pyarrow.parquet  # noqa: F401
import pymodbus.client  # noqa: F401
import s3fs  # noqa: F401
import sqlalchemy  # noqa: F401
from pyspark.sql import SparkSession

work = Path(tempfile.mkdtemp())
db = work / "historian.db"
with sqlite3.connect(db) as con:
    con.execute("CREATE TABLE t (id INTEGER, v REAL)")
    con.executemany("INSERT INTO t VALUES (?, ?)", [(i, i / 2) for i in range(10)])
spark = (SparkSession.builder.master("local[1]")
         .config("spark.jars", "/usr/share/java/sqlite-jdbc.jar")
         .config("spark.ui.enabled", "false").getOrCreate())
rows = spark.read.jdbc(f"jdbc:sqlite:{db}", "t", properties={"driver": "org.sqlite.JDBC"})
rows.write.partitionBy("id").parquet(str(work / "out"))
assert spark.read.parquet(str(work / "out")).count() == 10
spark.stop()
print("smoke: spark local + jdbc + parquet ok")
