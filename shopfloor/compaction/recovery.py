"""Recovering what unfinished claims left in the lake, whatever chain of crashes left it.

A claim's manifest is written before its first file moves into place and dropped only
after its keys are recorded (SUCCESS or QUARANTINED) in the registry; its staging folder
lives from the COPY until the publish. So the lake itself holds the durable list of
claims that may have left output behind: every manifest and staging folder under
``_compaction/<target>/``. No run's memory is needed (the ``previous_run_id`` a
take-over returns is lost when that run dies too), and no extra table either.

Each leftover is judged by what the registry says of its run (:func:`holdings`):

- ``finished``: the run recorded its keys; its files are final, only its manifest (and
  staging) were not dropped yet (a crash between the commit and the drop): drop them.
- ``live``: the run still holds a fresh claim (it is working right now): leave it.
- ``dead``: the run crashed, was released or taken over: delete its files by the
  manifest, its staging, then the manifest (last, so a crash meanwhile repeats the
  clean). Cleaning twice is a no-op.

Readers that follow the lake protocol (``shopfloor.lake.protocol``) never read the files
of a claim that has a manifest, so a dead claim's partial output is invisible from the
crash until it is cleaned, and a claim's files appear all at once when it finishes.
"""

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from shopfloor.compaction import output
from shopfloor.compaction.claims import DEAD, FINISHED, LIVE
from shopfloor.compaction.layout import ClaimLayout, check_target_prefix
from shopfloor.storage import StorageLocation

# <token>[.<scope>], as ClaimLayout.name writes it (tokens and scopes have no dots).
_NAME = re.compile(r"^([A-Za-z0-9_-]{1,64})(?:\.([A-Za-z0-9_-]{1,64}))?$")
Judge = Callable[[Sequence[tuple[str, str]]], Mapping[tuple[str, str], str]]
"""Given ``(token, scope)`` pairs, what became of each claim: ``finished``, ``live`` or
``dead`` (``shopfloor.compaction.claims.holdings`` over the registry)."""


@dataclass
class Recovery:
    """What :func:`recover` did: claim names per verdict, and files deleted."""

    cleaned: list[str] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    files_cleaned: int = 0


def manifest_dir(target_prefix: str) -> str:
    return f"_compaction/{check_target_prefix(target_prefix)}/manifests"


def staging_dir(target_prefix: str) -> str:
    return f"_compaction/{check_target_prefix(target_prefix)}/staging"


def _name(key: str, suffix: str = "") -> str | None:
    base = key.rstrip("/").rsplit("/", 1)[-1]
    if suffix:
        if not base.endswith(suffix):
            return None
        base = base[:-len(suffix)]
    return base if _NAME.fullmatch(base) else None


def unfinished_claims(lake: StorageLocation, target_prefix: str) -> set[str]:
    """Names (``token[.scope]``) of the claims with a manifest under ``target_prefix``:
    the claims whose files readers must not see (one listing of the manifest folder)."""
    _, objects = lake.list_folder(manifest_dir(target_prefix))
    return {n for o in objects if (n := _name(o.key, ".json"))}


def leftovers(lake: StorageLocation, target_prefix: str) -> set[str]:
    """Names of every claim with a manifest or a staging folder under ``target_prefix``."""
    folders, _ = lake.list_folder(staging_dir(target_prefix))
    return unfinished_claims(lake, target_prefix) | {n for f in folders if (n := _name(f))}


def split_name(name: str) -> tuple[str, str]:
    """``(token, scope)`` of a claim name; the scope is ``""`` for unscoped claims."""
    m = _NAME.fullmatch(name)
    if not m:
        raise ValueError(f"not a claim name: {name!r}")
    return m.group(1), m.group(2) or ""


def recover(lake: StorageLocation, target_prefix: str, judge: Judge,
            keep: Sequence[str] = ()) -> Recovery:
    """Clean the leftovers of dead claims and drop those of finished ones (see the
    module docstring); ``keep`` names tokens never touched (the calling run's own)."""
    kept = set(keep)
    names = sorted(n for n in leftovers(lake, target_prefix) if split_name(n)[0] not in kept)
    result = Recovery()
    if not names:
        return result
    verdicts = judge([split_name(n) for n in names])
    for name in names:
        token, scope = split_name(name)
        layout = ClaimLayout(lake, target_prefix, token, scope)
        verdict = verdicts.get((token, scope), DEAD)
        if verdict == LIVE:
            result.left.append(name)
        elif verdict == FINISHED:
            output.drop_staging(layout)
            output.forget_manifest(layout)
            result.forgotten.append(name)
        else:
            result.files_cleaned += output.clean_claim(layout)
            result.cleaned.append(name)
    return result


__all__ = ["DEAD", "FINISHED", "LIVE", "Recovery", "leftovers", "recover", "split_name",
           "unfinished_claims"]
