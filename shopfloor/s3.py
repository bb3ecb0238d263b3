"""S3 connection settings and the two clients the storage layer itself needs (boto3 for
listing, pyarrow's S3 filesystem), made from the settings alone.

Below :mod:`shopfloor.storage` (which knows a local folder from a bucket) and
:mod:`shopfloor.storage_engines` (DuckDB and Spark translations): both import from here,
nothing here imports them.
"""

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class S3Credentials:
    """Connection settings for S3; the secret never shows in ``repr``."""

    key_id: str | None = None
    secret: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    region: str | None = None
    endpoint_url: str | None = None

    @property
    def endpoint_host(self) -> str | None:
        """``host:port`` of a custom endpoint (what DuckDB's ENDPOINT wants)."""
        return urlparse(self.endpoint_url).netloc if self.endpoint_url else None

    @property
    def use_ssl(self) -> bool:
        return not self.endpoint_url or urlparse(self.endpoint_url).scheme == "https"


def boto3_client(credentials: S3Credentials | None) -> Any:
    """A boto3 S3 client for ``credentials`` (listing with StartAfter, bulk deletes)."""
    import boto3

    c = credentials or S3Credentials()
    return boto3.client(
        "s3", aws_access_key_id=c.key_id, aws_secret_access_key=c.secret,
        aws_session_token=c.session_token, region_name=c.region or DEFAULT_REGION,
        endpoint_url=c.endpoint_url,
    )


def arrow_s3_filesystem(credentials: S3Credentials | None) -> Any:
    """pyarrow's S3 filesystem for ``credentials`` (it pickles: usable on Spark executors)."""
    from pyarrow import fs

    c = credentials
    kwargs: dict[str, Any] = {"region": (c.region if c and c.region else DEFAULT_REGION)}
    if c:
        kwargs.update(access_key=c.key_id, secret_key=c.secret, session_token=c.session_token)
        if c.endpoint_url:
            kwargs.update(endpoint_override=c.endpoint_host,
                          scheme="https" if c.use_ssl else "http")
    return fs.S3FileSystem(**kwargs)
