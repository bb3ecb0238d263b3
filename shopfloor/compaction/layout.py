"""Where compaction writes in the lake: final partitions, per-claim staging and manifests.

Everything a claim writes is named after its token (the claiming flow run's id), so a
retry finds and replaces its own files, and a run that takes over a stale claim finds
and deletes the stale claim's files. Staging and manifests live under ``_compaction/``
beside the target prefix, where readers of the target never see them.
"""

import re
from dataclasses import dataclass

from shopfloor.errors import ShopfloorError
from shopfloor.storage import StorageLocation

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9_.=-]{1,128}$")


def check_target_prefix(prefix: str) -> str:
    """``prefix`` without surrounding slashes if every segment is a safe folder name."""
    clean = (prefix or "").strip("/")
    segments = clean.split("/") if clean else []
    if not segments or any(not _SEGMENT.fullmatch(s) or s in (".", "..") for s in segments):
        raise ShopfloorError(
            f"invalid target_prefix {prefix!r}: use folder names of letters, digits, "
            "'_', '-', '.', '=' separated by '/'"
        )
    return clean


def check_token(token: str) -> str:
    """A claim token (a flow run id) safe to put in object names."""
    if not _TOKEN.fullmatch(token or ""):
        raise ShopfloorError(f"invalid claim token {token!r}")
    return token


def sql_string(value: str) -> str:
    """A SQL string literal (quotes doubled), for the places DuckDB takes no parameter."""
    return "'" + value.replace("'", "''") + "'"


def fs_path(url: str) -> str:
    """The fsspec path of a location URL (``s3://b/k`` -> ``b/k``; local paths unchanged)."""
    return url[len("s3://"):] if url.startswith("s3://") else url


@dataclass(frozen=True)
class ClaimLayout:
    """The lake paths of one claim."""

    lake: StorageLocation
    target_prefix: str
    token: str

    @property
    def final_root(self) -> str:
        return self.lake.url(self.target_prefix)

    @property
    def staging_key(self) -> str:
        return f"_compaction/{self.target_prefix}/staging/{self.token}"

    @property
    def staging_root(self) -> str:
        return self.lake.url(self.staging_key)

    @property
    def manifest_key(self) -> str:
        return f"_compaction/{self.target_prefix}/manifests/{self.token}.json"

    @property
    def filename_pattern(self) -> str:
        return f"part-{self.token}-{{i}}"

    def final_url(self, staged_url: str) -> str:
        """Where a staged file goes: the same partition path under the target prefix."""
        root = self.staging_root.rstrip("/") + "/"
        if not staged_url.startswith(root):
            raise ShopfloorError(f"staged file {staged_url!r} is outside {root!r}")
        return self.final_root.rstrip("/") + "/" + staged_url[len(root):]

    def for_token(self, token: str) -> "ClaimLayout":
        return ClaimLayout(self.lake, self.target_prefix, check_token(token))
