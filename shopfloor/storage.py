"""Object storage behind one interface: a local folder or an S3 bucket (AWS, MinIO, moto).

Blocks (``S3Bucket``, ``LocalFileSystem``) are turned into a :class:`StorageLocation` by
``blocks.resolve.load_storage``; everything below works on plain values, so the domain
stays free of prefect.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse


@dataclass(frozen=True)
class ObjectInfo:
    """One object: its key relative to the location, and its size in bytes."""

    key: str
    size: int


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


@dataclass(frozen=True)
class StorageLocation:
    """A folder (``kind="local"``, ``root`` = a path) or a bucket (``kind="s3"``,
    ``root`` = the bucket name), with an optional key ``prefix`` inside it."""

    kind: Literal["local", "s3"]
    root: str
    prefix: str = ""
    credentials: S3Credentials | None = None

    def _full_key(self, key: str) -> str:
        parts = [p.strip("/") for p in (self.prefix, key) if p and p.strip("/")]
        return "/".join(parts)

    def url(self, key: str = "") -> str:
        """An address DuckDB, pyarrow and fsspec understand: a path or ``s3://bucket/key``."""
        full = self._full_key(key)
        if self.kind == "local":
            return str(Path(self.root, full)) if full else str(Path(self.root))
        return f"s3://{self.root}/{full}" if full else f"s3://{self.root}"

    def filesystem(self) -> Any:
        """An fsspec filesystem for this location (local, or s3fs with the credentials)."""
        import fsspec

        if self.kind == "local":
            return fsspec.filesystem("file", auto_mkdir=True)
        c = self.credentials or S3Credentials()
        client_kwargs: dict[str, Any] = {}
        if c.endpoint_url:
            client_kwargs["endpoint_url"] = c.endpoint_url
        if c.region:
            client_kwargs["region_name"] = c.region
        return fsspec.filesystem(
            "s3", key=c.key_id, secret=c.secret, token=c.session_token,
            client_kwargs=client_kwargs, use_listings_cache=False,
        )

    def _fs_path(self, key: str = "") -> str:
        url = self.url(key)
        return url[len("s3://"):] if url.startswith("s3://") else url

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under ``prefix`` (keys relative to the location), paging as needed."""
        fs = self.filesystem()
        base = self._fs_path().rstrip("/")
        path = self._fs_path(prefix)
        if self.kind == "local" and not Path(path).exists():
            return
        try:
            found = fs.find(path, detail=True)
        except FileNotFoundError:
            return
        for name, info in sorted(found.items()):
            if info.get("type") == "directory":
                continue
            rel = name[len(base):].lstrip("/") if name.startswith(base) else name
            yield ObjectInfo(rel, int(info.get("size") or 0))

    def read_bytes(self, key: str) -> bytes:
        return self.filesystem().cat_file(self._fs_path(key))

    def write_bytes(self, key: str, data: bytes) -> None:
        fs = self.filesystem()
        path = self._fs_path(key)
        if self.kind == "local":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        fs.pipe_file(path, data)

    def exists(self, key: str) -> bool:
        return bool(self.filesystem().exists(self._fs_path(key)))

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; returns how many were deleted."""
        keys = [o.key for o in self.list_objects(prefix)]
        if keys:
            fs = self.filesystem()
            fs.rm([self._fs_path(k) for k in keys])
        return len(keys)
