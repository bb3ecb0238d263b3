"""One :class:`~shopfloor.storage.StorageLocation`, translated for each engine that reads
or writes it: DuckDB (httpfs secret), Spark (s3a Hadoop settings), pyarrow (S3FileSystem)
and boto3 (listing). Side by side, so a new credential field is added everywhere at once.

Every function takes the location and returns plain values; nothing here logs, and the
secrets only ever travel as bound parameters or in-memory settings.
"""

import re
from collections.abc import Iterable
from typing import Any

from shopfloor import s3
from shopfloor.errors import ShopfloorError
from shopfloor.s3 import DEFAULT_REGION, S3Credentials
from shopfloor.storage import StorageLocation

_SECRET_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _creds(location: StorageLocation) -> S3Credentials:
    return location.credentials or S3Credentials()


# -- DuckDB ----------------------------------------------------------------------------
def duckdb_secret(location: StorageLocation, name: str) -> tuple[str, dict[str, object]]:
    """``CREATE SECRET`` for the location's bucket: the statement and its bound values.

    The secret name is ours (checked against a pattern); every credential value is a
    bound parameter, so a quote in a key cannot break out of the statement.
    """
    if not _SECRET_NAME.fullmatch(name):
        raise ShopfloorError(f"invalid DuckDB secret name {name!r}")
    c = _creds(location)
    options = ["TYPE s3", "KEY_ID $key_id", "SECRET $secret", "SESSION_TOKEN $session_token",
               "REGION $region", "SCOPE $scope"]
    params: dict[str, object] = {
        "key_id": c.key_id or "", "secret": c.secret or "",
        "session_token": c.session_token or "", "region": c.region or DEFAULT_REGION,
        "scope": f"s3://{location.root}",
    }
    if c.endpoint_host:
        # MinIO / moto: path-style URLs on a custom host; SSL only for https endpoints.
        options += ["ENDPOINT $endpoint", "URL_STYLE 'path'",
                    f"USE_SSL {'true' if c.use_ssl else 'false'}"]
        params["endpoint"] = c.endpoint_host
    return f"CREATE OR REPLACE SECRET {name} ({', '.join(options)})", params


def attach_duckdb(con: Any, locations: Iterable[StorageLocation]) -> int:
    """Let DuckDB connection ``con`` read and write the remote locations: httpfs loaded
    offline from the ``duckdb-extension-httpfs`` wheel, one secret per bucket.
    Returns how many secrets were created (0 for local folders only)."""
    remote = [loc for loc in locations if loc.is_remote]
    if not remote:
        return 0
    from duckdb_extensions import import_extension

    import_extension("httpfs", con=con)
    for i, loc in enumerate(remote):
        sql, params = duckdb_secret(loc, f"shopfloor_s3_{i}")
        con.execute(sql, params)
    return len(remote)


# -- Spark / Hadoop s3a ----------------------------------------------------------------
def spark_s3a_settings(location: StorageLocation) -> dict[str, str]:
    """Hadoop ``fs.s3a.*`` settings for the location (empty for a local folder)."""
    if not location.is_remote:
        return {}
    c = _creds(location)
    settings = {
        "fs.s3a.access.key": c.key_id,
        "fs.s3a.secret.key": c.secret,
        "fs.s3a.session.token": c.session_token,
        "fs.s3a.endpoint": c.endpoint_url,
        "fs.s3a.path.style.access": "true" if c.endpoint_url else None,
    }
    if c.session_token:
        settings["fs.s3a.aws.credentials.provider"] = (
            "org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider")
    return {k: v for k, v in settings.items() if v}


# -- pyarrow and boto3 (made in shopfloor.s3; here for callers holding a location) -----
def arrow_filesystem(location: StorageLocation) -> Any:
    """A pyarrow filesystem for the location (it pickles: usable on Spark executors)."""
    return location.arrow_filesystem()


def boto3_client(location: StorageLocation) -> Any:
    """A boto3 S3 client for the location's credentials."""
    return s3.boto3_client(location.credentials)
