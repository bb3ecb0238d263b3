"""Where compaction writes in the lake: final partitions, per-claim staging and manifests.

Everything a claim writes is named after its token (the claiming flow run's id), so a
retry finds and replaces its own files, and a run that takes over a stale claim finds
and deletes the stale claim's files. Staging and manifests live under ``_compaction/``
beside the target prefix, where readers of the target never see them.
"""

import re
from dataclasses import dataclass

from shopfloor.errors import UserError
from shopfloor.identifiers import check_token as check_identifier_token
from shopfloor.params import PREFIX_PATTERN
from shopfloor.storage import StorageLocation

_SEGMENT = re.compile(r"^[A-Za-z0-9_.=-]{1,128}$")
_PREFIX = re.compile(PREFIX_PATTERN)


def check_target_prefix(prefix: str) -> str:
    """``prefix`` without a trailing slash if every segment is a safe folder name (the
    flow parameter type ``StoragePrefix``'s rule, and at most 128 characters a segment)."""
    valid = isinstance(prefix, str) and _PREFIX.fullmatch(prefix)
    clean = prefix.strip("/") if valid else ""
    if not clean or any(not _SEGMENT.fullmatch(s) for s in clean.split("/")):
        raise UserError(
            f"invalid target_prefix {prefix!r}: use folder names of letters, digits, "
            "'_', '-', '.', '=' separated by '/'"
        )
    return clean


def check_token(token: str) -> str:
    """A claim token (a flow run id) safe to put in object names."""
    return check_identifier_token(token, "claim token")


def sql_string(value: str) -> str:
    """A SQL string literal (quotes doubled), for the places DuckDB takes no parameter."""
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class ClaimLayout:
    """The lake keys of one claim: where it stages, where it publishes, its manifest.

    The target prefix is checked and stripped of surrounding slashes here, so every
    caller (a flow, a benchmark, a test) names the same keys for the same claim.
    """

    lake: StorageLocation
    target_prefix: str
    token: str
    # The district a claim serves: one run compacts several districts one after another
    # under the same token (its flow run id), and a record may name another district
    # than its key's, so names carry the scope to stay unique per (run, district).
    scope: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_prefix", check_target_prefix(self.target_prefix))
        check_token(self.token)
        if self.scope:
            check_identifier_token(self.scope, "claim scope")

    @property
    def name(self) -> str:
        """The claim's name in the lake: the token, and the scope if there is one."""
        return f"{self.token}.{self.scope}" if self.scope else self.token

    @property
    def staging_key(self) -> str:
        return f"_compaction/{self.target_prefix}/staging/{self.name}"

    @property
    def staging_root(self) -> str:
        return self.lake.url(self.staging_key)

    @property
    def manifest_key(self) -> str:
        return f"_compaction/{self.target_prefix}/manifests/{self.name}.json"

    @property
    def filename_pattern(self) -> str:
        return f"part-{self.name}-{{i}}"

    def _partition_path(self, staged_url: str) -> str:
        # DuckDB returns the files it wrote as URLs under the staging root it was given.
        root = self.staging_root.rstrip("/") + "/"
        if not staged_url.startswith(root):
            raise UserError(f"staged file {staged_url!r} is outside {root!r}")
        return staged_url[len(root):]

    def staged_key(self, staged_url: str) -> str:
        """The lake key of a file DuckDB wrote into the staging folder."""
        return f"{self.staging_key}/{self._partition_path(staged_url)}"

    def final_key(self, staged_url: str) -> str:
        """Where a staged file goes: the same partition path under the target prefix."""
        return f"{self.target_prefix}/{self._partition_path(staged_url)}"

    def for_token(self, token: str) -> "ClaimLayout":
        """The same scope's layout of another claim token (a stale claim taken over)."""
        return ClaimLayout(self.lake, self.target_prefix, check_token(token), self.scope)

    def unscoped(self) -> "ClaimLayout":
        """The layout without a scope (claims written before runs served several
        districts), so a take-over also cleans what such a claim left."""
        return ClaimLayout(self.lake, self.target_prefix, self.token)
