"""Object storage behind one interface: a local folder or an S3 bucket (AWS, MinIO, moto).

This module is the only place that knows a local folder from a bucket. Callers work on
keys relative to a :class:`StorageLocation` and ask it for what they need: a URL for
DuckDB, a filesystem path, an fsspec or pyarrow filesystem, listing (with a
start-after), removing a tree, moving an object. The engine-specific credential
translations (DuckDB secret, Spark s3a settings, pyarrow S3) live side by side in
:mod:`shopfloor.storage_engines`, fed by the same location.

Blocks (``S3Bucket``, ``LocalFileSystem``) are turned into a :class:`StorageLocation` by
``blocks.resolve.load_storage``; everything below works on plain values, so the domain
stays free of prefect.
"""

import os
import shutil
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from shopfloor.errors import ShopfloorError, UserError
from shopfloor.s3 import S3Credentials, arrow_s3_filesystem, boto3_client

S3_SCHEME = "s3://"


@dataclass(frozen=True)
class ObjectInfo:
    """One object: its key relative to the location, and its size in bytes."""

    key: str
    size: int


@dataclass(frozen=True)
class StorageLocation:
    """A folder (``kind="local"``, ``root`` = a path) or a bucket (``kind="s3"``,
    ``root`` = the bucket name), with an optional key ``prefix`` inside it."""

    kind: Literal["local", "s3"]
    root: str
    prefix: str = ""
    credentials: S3Credentials | None = None

    # -- addresses ---------------------------------------------------------------
    @property
    def is_remote(self) -> bool:
        """True for object storage (no folders, no atomic rename, needs credentials)."""
        return self.kind != "local"

    def _full_key(self, key: str) -> str:
        parts = [p.strip("/") for p in (self.prefix, key) if p and p.strip("/")]
        return "/".join(parts)

    def url(self, key: str = "") -> str:
        """An address DuckDB, pyarrow and fsspec understand: a path or ``s3://bucket/key``."""
        full = self._full_key(key)
        if not self.is_remote:
            return str(Path(self.root, full)) if full else str(Path(self.root))
        return f"{S3_SCHEME}{self.root}/{full}" if full else f"{S3_SCHEME}{self.root}"

    def path(self, key: str = "") -> str:
        """The filesystem path of ``key`` for fsspec and pyarrow: a local path, or
        ``bucket/key`` (no scheme) on S3."""
        return self.url(key).removeprefix(S3_SCHEME)

    def hadoop_url(self, key: str = "") -> str:
        """The address Hadoop/Spark's own writer takes: a local path or ``s3a://bucket/key``."""
        return f"s3a://{self.path(key)}" if self.is_remote else self.url(key)

    # -- filesystems -------------------------------------------------------------
    def filesystem(self) -> Any:
        """An fsspec filesystem for this location (local, or s3fs with the credentials)."""
        import fsspec

        if not self.is_remote:
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

    def arrow_filesystem(self) -> Any:
        """A pyarrow filesystem for this location (it pickles: usable on Spark executors)."""
        if not self.is_remote:
            from pyarrow import fs

            return fs.LocalFileSystem()
        return arrow_s3_filesystem(self.credentials)

    # -- reading -------------------------------------------------------------------
    def list_objects(self, prefix: str = "", start_after: str | None = None
                     ) -> Iterator[ObjectInfo]:
        """Every object under ``prefix`` in key order, paging as needed.

        Keys are relative to the location. With ``start_after``, only keys that sort
        after it are returned (S3's ``StartAfter``: a listing resumes where the last
        one stopped instead of walking the whole history again).
        """
        if not self.is_remote and not Path(self.path(prefix)).exists():
            return
        if self.is_remote:
            yield from self._list_s3(prefix, start_after)
            return
        fs = self.filesystem()
        base = self.path().rstrip("/")
        found = fs.find(self.path(prefix), detail=True)
        for name, info in sorted(found.items()):
            if info.get("type") == "directory":
                continue
            rel = name[len(base):].lstrip("/") if name.startswith(base) else name
            if start_after is None or rel > start_after:
                yield ObjectInfo(rel, int(info.get("size") or 0))

    def _list_s3(self, prefix: str, start_after: str | None) -> Iterator[ObjectInfo]:
        base = self._full_key("")
        full_prefix = self._full_key(prefix)
        # A folder-like prefix ("a") must not match "ab/..."; S3 prefixes are plain strings.
        kwargs: dict[str, Any] = {"Bucket": self.root,
                                  "Prefix": full_prefix + "/" if full_prefix else ""}
        if start_after is not None:
            kwargs["StartAfter"] = self._full_key(start_after)
        client = boto3_client(self.credentials)
        try:
            for page in client.get_paginator("list_objects_v2").paginate(**kwargs):
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    rel = key[len(base):].lstrip("/") if base else key
                    if rel and not key.endswith("/"):
                        yield ObjectInfo(rel, int(obj.get("Size") or 0))
        except client.exceptions.NoSuchBucket:
            raise ShopfloorError(f"bucket {self.root!r} does not exist") from None

    def list_folder(self, prefix: str = "") -> tuple[list[str], list[ObjectInfo]]:
        """One level under ``prefix``: its sub-folders (keys, no trailing ``/``) and the
        objects directly inside it, both in key order.

        S3 answers this with a ``Delimiter='/'`` listing, whose cost follows the entries
        of this one level, not everything below it.
        """
        if not self.is_remote:
            root = Path(self.path(prefix))
            if not root.is_dir():
                return [], []
            parent = prefix.strip("/")
            folders, objects = [], []
            for entry in sorted(root.iterdir(), key=lambda e: e.name):
                key = f"{parent}/{entry.name}" if parent else entry.name
                if entry.is_dir():
                    folders.append(key)
                elif entry.is_file():
                    objects.append(ObjectInfo(key, entry.stat().st_size))
            return folders, objects
        base = self._full_key("")
        full_prefix = self._full_key(prefix)
        kwargs: dict[str, Any] = {"Bucket": self.root, "Delimiter": "/",
                                  "Prefix": full_prefix + "/" if full_prefix else ""}
        client = boto3_client(self.credentials)

        def rel(key: str) -> str:
            return key[len(base):].lstrip("/") if base else key

        folders, objects = [], []
        try:
            for page in client.get_paginator("list_objects_v2").paginate(**kwargs):
                for cp in page.get("CommonPrefixes", []):
                    folders.append(rel(cp["Prefix"]).rstrip("/"))
                for obj in page.get("Contents", []):
                    if not obj["Key"].endswith("/") and rel(obj["Key"]):
                        objects.append(ObjectInfo(rel(obj["Key"]), int(obj.get("Size") or 0)))
        except client.exceptions.NoSuchBucket:
            raise ShopfloorError(f"bucket {self.root!r} does not exist") from None
        return sorted(folders), sorted(objects, key=lambda o: o.key)

    def check_exists(self, role: str = "storage") -> None:
        """Raise one clear line if the bucket does not exist or cannot be reached.

        A local folder always passes (it is created on first write). ``role`` names the
        location in the message (e.g. the block name).
        """
        if not self.is_remote:
            return
        import botocore.exceptions

        try:
            boto3_client(self.credentials).head_bucket(Bucket=self.root)
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            what = {"404": "does not exist", "NoSuchBucket": "does not exist",
                    "403": "refuses these credentials"}.get(code, f"answers {code}")
            # A missing bucket or refused credentials are settings to fix; other answers
            # (throttling, a server error) may pass.
            kind = UserError if code in ("404", "NoSuchBucket", "403") else ShopfloorError
            raise kind(f"{role}: bucket {self.root!r} {what}") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise ShopfloorError(f"{role}: bucket {self.root!r} cannot be reached: "
                                 f"{str(exc).splitlines()[0] if str(exc) else exc!r}") from None

    def read_bytes(self, key: str) -> bytes:
        return self.filesystem().cat_file(self.path(key))

    def exists(self, key: str) -> bool:
        return bool(self.filesystem().exists(self.path(key)))

    def size(self, key: str) -> int:
        """Bytes of the object ``key``."""
        return int(self.filesystem().size(self.path(key)))

    # -- writing -----------------------------------------------------------------
    def make_parent(self, key: str) -> None:
        """Create the folder that will hold ``key`` (local only: S3 has no folders)."""
        if not self.is_remote:
            Path(self.path(key)).parent.mkdir(parents=True, exist_ok=True)

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write (or replace) the object ``key`` whole: on S3 one PUT, on a local folder
        a hidden temporary file renamed over it, so a process killed mid-write leaves the
        old object or the new one, never a torn one (tests/crash)."""
        self.make_parent(key)
        if self.is_remote:
            self.filesystem().pipe_file(self.path(key), data)
            return
        path = Path(self.path(key))
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def move(self, src_key: str, dst_key: str) -> None:
        """Move one object. Atomic on a local folder (``os.replace``); on S3 a copy then a
        delete, so a reader may briefly see both: callers publish through a manifest."""
        if not self.is_remote:
            self.make_parent(dst_key)
            os.replace(self.path(src_key), self.path(dst_key))
            return
        self.filesystem().mv(self.path(src_key), self.path(dst_key))

    def move_many(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Move several objects (``(src_key, dst_key)`` pairs). A local folder renames
        each (atomic); S3 copies them server-side, concurrently, then deletes the sources
        in bulk requests (1,000 keys each), so a reader may briefly see both."""
        if not pairs:
            return
        if not self.is_remote:
            for src, dst in pairs:
                self.move(src, dst)
            return
        fs = self.filesystem()
        sources = [self.path(src) for src, _ in pairs]
        fs.copy(sources, [self.path(dst) for _, dst in pairs], on_error="raise")
        fs.rm(sources)

    def delete(self, keys: Iterable[str]) -> int:
        """Delete these objects (missing ones are ignored); returns how many were asked."""
        paths = [self.path(k) for k in keys]
        if not paths:
            return 0
        fs = self.filesystem()
        present = paths if self.is_remote else [p for p in paths if os.path.exists(p)]
        if present:
            fs.rm(present)
        return len(paths)

    def remove_tree(self, prefix: str) -> int:
        """Delete everything under ``prefix`` (a folder and its sub-folders, or every
        object whose key starts with ``prefix/``); returns objects deleted."""
        if not self.is_remote:
            root = Path(self.path(prefix))
            if not root.exists():
                return 0
            count = sum(1 for p in root.rglob("*") if p.is_file())
            shutil.rmtree(root, ignore_errors=True)
            return count
        return self.delete_prefix(prefix)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; returns how many were deleted."""
        return self.delete([o.key for o in self.list_objects(prefix)])
