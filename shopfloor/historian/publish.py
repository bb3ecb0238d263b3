"""Replacing a window of the extraction's output so that a failure never empties it.

A month is written where readers do not look, checked there, and only then swapped in:

1. **stage**: the writers write ``_extraction/<output_prefix>/staging/<token>/`` with the
   output's layout, ``date=`` or ``tag=/date=`` (outside ``<output_prefix>/``, so readers
   never see it); in the date layout a run of some tags also copies the other tags' rows
   of the days it replaces there (:func:`~shopfloor.historian.lake.carry_other_tags`);
2. **check**: the staged files are counted against the source (the caller does that);
   a failure or a mismatch drops the staging and the old output stays as it was;
3. **replace**: a manifest ``_extraction/<output_prefix>/manifests/<token>.json`` lists
   the moves (staged key -> final key) and the old files of the window to delete; then
   the files are moved, the manifest is rewritten with ``"committed": true`` (one PUT,
   an atomic rename on a folder: the commit point), the old files are deleted, and the
   staging and the manifest removed.

Readers that follow the lake protocol (:mod:`shopfloor.lake.protocol`) use the manifest:
before the commit they do not read the files moved in (they read the old output whole),
after it they do not read the old files (they read the new output whole), so a reader
never sees a month half replaced or twice.

Final names carry the token (``part-<token>-...``), so a new file never overwrites an
old one that the manifest is about to delete. A crash during step 3 leaves the manifest:
the next run rolls it *forward* (:func:`clean_leftovers`; every step is idempotent: a
move whose source is gone and whose destination exists is done). A crash before step 3
leaves only staging, which the next run removes. Two runs must not write the same
output prefix at the same time (the second would remove the first one's staging).

Everything works on lake keys through :class:`~shopfloor.storage.StorageLocation`, so
the same code runs on a local folder and on a bucket.
"""

import json
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from shopfloor.errors import DataIntegrityError, UserError
from shopfloor.historian.lake import (
    TAG,
    check_layout,
    in_window,
    is_data_file,
    partition_of,
    window_files,
)
from shopfloor.historian.plan import OUTPUT_PREFIX_PATTERN
from shopfloor.identifiers import check_token as check_identifier_token
from shopfloor.lake.protocol import is_committed
from shopfloor.storage import StorageLocation

AREA = "_extraction"
_PREFIX = re.compile(OUTPUT_PREFIX_PATTERN)


def check_token(token: str) -> str:
    """A publish token safe to put in object names (letters, digits, ``_``, ``-``)."""
    return check_identifier_token(token, "extraction token")


def new_token(run_id: str | None = None) -> str:
    """A token for one month's publish: the flow run id (to trace files to their run) and
    8 random hex digits, so a retried flow run never reuses a name; a uuid without a run."""
    suffix = uuid.uuid4().hex
    return check_token(f"{run_id}-{suffix[:8]}" if run_id else suffix)


def check_output_prefix(prefix: str) -> str:
    """The output prefix if it is a safe relative folder (the flow parameter's rule) and
    not inside the staging area (a replace would take staged files for old output)."""
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise UserError(f"invalid output prefix {prefix!r}")
    if prefix.split("/")[0] == AREA:
        raise UserError(f"invalid output prefix {prefix!r}: {AREA}/ holds the staging")
    return prefix


def area_key(output_prefix: str) -> str:
    """``_extraction/<output_prefix>``: staging and manifests of that output."""
    return f"{AREA}/{check_output_prefix(output_prefix)}"


@dataclass(frozen=True)
class PublishLayout:
    """The lake keys of one publish: its staging folder, its manifest, the final names."""

    storage: StorageLocation
    output_prefix: str
    token: str
    partitioning: str = TAG  # the output's layout: ``tag`` or ``date`` (historian.lake)

    def __post_init__(self) -> None:
        check_output_prefix(self.output_prefix)
        check_token(self.token)
        check_layout(self.partitioning)

    @property
    def staging_key(self) -> str:
        return f"{area_key(self.output_prefix)}/staging/{self.token}"

    @property
    def manifest_key(self) -> str:
        return f"{area_key(self.output_prefix)}/manifests/{self.token}.json"

    def final_key(self, staged_key: str) -> str:
        """``<output_prefix>/<partition folders>/part-<token>-<name>`` of a staged file."""
        rel = staged_key.removeprefix(self.staging_key + "/")
        folder, _, name = rel.rpartition("/")
        return f"{self.output_prefix}/{folder}/part-{self.token}-{name.removeprefix('part-')}"


def staged_files(layout: PublishLayout, tag_keys: Iterable[str],
                 dates: Iterable[str]) -> list[str]:
    """The staged Parquet data files; one outside the window's partitions is an error
    (it would be published where the replace deletes nothing)."""
    wanted_tags, wanted_dates = set(tag_keys), set(dates)
    keys = [o.key for o in layout.storage.list_objects(layout.staging_key)
            if is_data_file(o.key)]
    for key in keys:
        part = partition_of(key.removeprefix(layout.staging_key + "/"))
        if not in_window(part, layout.partitioning, wanted_tags, wanted_dates):
            raise DataIntegrityError(f"staged file {key!r} is outside the window's partitions")
    return keys


def plan_replace(layout: PublishLayout, staged: list[str], tag_keys: Iterable[str],
                 dates: Iterable[str]) -> dict[str, Any]:
    """The manifest of a replace: the moves, and the window's old files to delete (in the
    date layout every file of the window's days: other tags' rows were carried into the
    staging)."""
    moves = [[key, layout.final_key(key)] for key in staged]
    finals = {dst for _, dst in moves}
    old = [k for k in window_files(layout.storage, layout.output_prefix, layout.partitioning,
                                   tag_keys, dates)
           if k not in finals]  # never delete what this replace puts in place
    return {"token": layout.token, "staging": layout.staging_key, "moves": moves,
            "delete": old}


def replace(layout: PublishLayout, manifest: dict[str, Any],
            after_first_move: Callable[[], None] = lambda: None,
            fault: Callable[[str], None] = lambda step: None) -> int:
    """Swap the staged files in for the old ones, manifest first; returns how many old
    Parquet data files were deleted. ``fault`` is the crash tests' hook (called with
    ``after_publish`` once every file moved, ``after_commit`` once committed)."""
    layout.storage.write_bytes(layout.manifest_key,
                               json.dumps({**manifest, "committed": False}).encode())
    return _finish(layout.storage, layout.manifest_key, manifest, after_first_move,
                   fault=fault)


def _finish(storage: StorageLocation, manifest_key: str, manifest: dict[str, Any],
            after_first_move: Callable[[], None] = lambda: None,
            resume: bool = False, fault: Callable[[str], None] = lambda step: None) -> int:
    """Apply a written manifest: moves, commit, deletes; then drop its staging and,
    last, itself.

    With ``resume`` (a manifest a crash left behind) every move is checked first: one
    whose source is gone and whose destination exists was done before the crash.
    """
    present = ({o.key for o in storage.list_objects(manifest["staging"])} if resume
               else None)
    for i, (src, dst) in enumerate(manifest["moves"]):
        if present is None or src in present:
            storage.move(src, dst)
        elif not storage.exists(dst):
            raise DataIntegrityError(
                f"manifest {manifest_key!r}: neither {src!r} nor {dst!r} exists; "
                "the replace cannot be finished, the old files are kept")
        if i == 0:
            after_first_move()
    fault("after_publish")
    if not (resume and is_committed(manifest)):
        # The commit point: one write flips readers from the old files to the new ones.
        storage.write_bytes(manifest_key, json.dumps({**manifest, "committed": True}).encode())
    fault("after_commit")
    storage.delete(manifest["delete"])
    storage.remove_tree(manifest["staging"])
    # The manifest goes last: a crash before this line leaves it for the next run.
    storage.delete([manifest_key])
    return sum(is_data_file(k) for k in manifest["delete"])


def _read_manifest(storage: StorageLocation, output_prefix: str, key: str) -> dict[str, Any]:
    """A manifest, refused unless every key it names is where this output's keys live."""
    manifest = json.loads(storage.read_bytes(key))
    staging = f"{area_key(output_prefix)}/staging/"
    final = f"{output_prefix}/"
    ok = (str(manifest.get("staging", "")).startswith(staging)
          and all(s.startswith(staging) and d.startswith(final)
                  for s, d in manifest.get("moves", []))
          and all(k.startswith(final) for k in manifest.get("delete", [])))
    if not ok:
        raise DataIntegrityError(f"manifest {key!r} names keys outside {output_prefix!r}")
    return manifest


@dataclass(frozen=True)
class Cleanup:
    """What :func:`clean_leftovers` found: manifests rolled forward, staged files removed."""

    rolled_forward: int
    staged_removed: int


def clean_leftovers(storage: StorageLocation, output_prefix: str) -> Cleanup:
    """Finish every replace a crash interrupted (roll its manifest forward), then remove
    every staging folder left without a manifest (a run that died before replacing)."""
    area = area_key(output_prefix)
    manifests = [o.key for o in storage.list_objects(f"{area}/manifests")
                 if o.key.endswith(".json")]
    for key in manifests:
        _finish(storage, key, _read_manifest(storage, output_prefix, key), resume=True)
    return Cleanup(len(manifests), storage.remove_tree(f"{area}/staging"))


def discard(layout: PublishLayout) -> bool:
    """After a failure: drop the staging unless a manifest was written (then the replace
    is under way and the next run rolls it forward). True if the staging was dropped."""
    if layout.storage.exists(layout.manifest_key):
        return False
    layout.storage.remove_tree(layout.staging_key)
    return True
