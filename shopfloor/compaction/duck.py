"""DuckDB connections for compaction: memory limit, spill folder, httpfs offline, S3 secrets."""

import re
from collections.abc import Iterable

import duckdb

from shopfloor.errors import ShopfloorError
from shopfloor.storage import StorageLocation

_RAM = re.compile(r"^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.IGNORECASE)


def check_ram_limit(value: str) -> str:
    """``value`` if it is a DuckDB memory size like ``10GB`` or ``512MiB``, else raise."""
    if not isinstance(value, str) or not _RAM.fullmatch(value):
        raise ShopfloorError(
            f"invalid ram_limit {value!r}: use a size such as '1GB', '512MB' or '10GiB'"
        )
    return value.strip()


def _secret_params(location: StorageLocation) -> dict[str, object]:
    c = location.credentials
    params: dict[str, object] = {
        "key_id": (c.key_id if c else None) or "",
        "secret": (c.secret if c else None) or "",
        "session_token": (c.session_token if c else None) or "",
        "region": (c.region if c else None) or "us-east-1",
        "scope": f"s3://{location.root}",
    }
    return params


def _create_s3_secret(con: duckdb.DuckDBPyConnection, name: str,
                      location: StorageLocation) -> None:
    c = location.credentials
    options = ["TYPE s3", "KEY_ID $key_id", "SECRET $secret", "SESSION_TOKEN $session_token",
               "REGION $region", "SCOPE $scope"]
    params = _secret_params(location)
    if c and c.endpoint_host:
        # MinIO / moto: path-style URLs on a custom host; SSL only for https endpoints.
        options += ["ENDPOINT $endpoint", "URL_STYLE 'path'",
                    f"USE_SSL {'true' if c.use_ssl else 'false'}"]
        params["endpoint"] = c.endpoint_host
    # The secret name is ours (checked below); every credential value is a bound parameter,
    # so a quote in a key cannot break out of the statement, and nothing is logged.
    con.execute(f"CREATE OR REPLACE SECRET {name} ({', '.join(options)})", params)


def connect(ram_limit: str, temp_dir: str,
            locations: Iterable[StorageLocation] = ()) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that spills to ``temp_dir`` past ``ram_limit`` and reads S3.

    httpfs is loaded from the ``duckdb-extension-httpfs`` wheel, so no download is needed.
    """
    con = duckdb.connect()
    con.execute("SET memory_limit = $v", {"v": check_ram_limit(ram_limit)})
    con.execute("SET temp_directory = $v", {"v": temp_dir})
    # Output order does not matter for partitioned Parquet; dropping it lets COPY stream.
    con.execute("SET preserve_insertion_order = false")
    s3 = [loc for loc in locations if loc.kind == "s3"]
    if s3:
        from duckdb_extensions import import_extension

        import_extension("httpfs", con=con)
        for i, loc in enumerate(s3):
            _create_s3_secret(con, f"shopfloor_s3_{i}", loc)
    return con
