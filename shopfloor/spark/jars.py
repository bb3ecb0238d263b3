"""Where the JDBC driver jars come from, first match wins.

1. ``spark_conf`` already names ``spark.jars`` or ``spark.jars.packages``: used as given.
2. ``$SHOPFLOOR_SPARK_JARS``: comma-separated jar paths or URLs.
3. The Debian packages' jars that exist (``libpostgresql-jdbc-java``,
   ``libxerial-sqlite-jdbc-java``, ``libmariadb-java``).
4. Otherwise ``spark.jars.packages`` with the Maven coordinates of the needed driver.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path

JARS_ENV = "SHOPFLOOR_SPARK_JARS"
DEBIAN_JARS = (
    "/usr/share/java/postgresql.jar",
    "/usr/share/java/sqlite-jdbc.jar",
    "/usr/share/java/mariadb-java-client.jar",
)
MAVEN_PACKAGES = {
    "postgresql": "org.postgresql:postgresql:42.7.4",
    "sqlite": "org.xerial:sqlite-jdbc:3.46.1.3",
    "mysql": "org.mariadb.jdbc:mariadb-java-client:3.4.1",
    "mssql": "com.microsoft.sqlserver:mssql-jdbc:12.8.1.jre11",
}


def jar_conf(kind: str, spark_conf: Mapping[str, str], env: Mapping[str, str],
             debian_jars: Sequence[str] = DEBIAN_JARS) -> dict[str, str]:
    """The ``spark.jars`` / ``spark.jars.packages`` setting to add for a ``kind`` database.

    Args:
        kind: the JDBC kind of the source (``postgresql``, ``mysql``, ``mssql``, ``sqlite``).
        spark_conf: the user's Spark settings (win over everything).
        env: the environment (for ``SHOPFLOOR_SPARK_JARS``).
        debian_jars: the jar paths to look for.
    """
    if "spark.jars" in spark_conf or "spark.jars.packages" in spark_conf:
        return {}
    if env.get(JARS_ENV, "").strip():
        jars = [j.strip() for j in env[JARS_ENV].split(",") if j.strip()]
        return {"spark.jars": ",".join(jars)}
    found = [j for j in debian_jars if Path(j).is_file()]
    if found and kind != "mssql":
        return {"spark.jars": ",".join(found)}
    return {"spark.jars.packages": MAVEN_PACKAGES[kind]}
