"""Publishing a claim's Parquet files, and removing what an unfinished claim left behind.

Order of a publish: write the manifest (the list of final files), move the staged
files to their final names, and only then (in the flow) mark the keys SUCCESS. A claim
whose keys never reached SUCCESS is cleaned from its manifest by whoever takes it over,
so its partial output never survives beside the new output.
"""

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from shopfloor.compaction.layout import ClaimLayout, fs_path


def _rel(layout: ClaimLayout, url: str) -> str:
    base = layout.lake.url("").rstrip("/") + "/"
    return url[len(base):] if url.startswith(base) else url


def _remove_tree(layout: ClaimLayout, key: str) -> None:
    if layout.lake.kind == "local":
        shutil.rmtree(layout.lake.url(key), ignore_errors=True)
    else:
        layout.lake.delete_prefix(key)


def clean_claim(layout: ClaimLayout) -> int:
    """Delete the final files listed in the claim's manifest, its staging and its manifest.

    Safe to repeat, and a no-op for a claim that wrote nothing. Returns files deleted.
    """
    fs = layout.lake.filesystem()
    deleted = 0
    if layout.lake.exists(layout.manifest_key):
        listed = json.loads(layout.lake.read_bytes(layout.manifest_key))["files"]
        present = [p for p in (fs_path(layout.lake.url(k)) for k in listed) if fs.exists(p)]
        if present:
            fs.rm(present)
        deleted = len(present)
    _remove_tree(layout, layout.staging_key)
    if layout.lake.exists(layout.manifest_key):
        fs.rm(fs_path(layout.lake.url(layout.manifest_key)))
    return deleted


def drop_staging(layout: ClaimLayout) -> None:
    """Remove the claim's staging folder (after a publish, or before a rewrite)."""
    _remove_tree(layout, layout.staging_key)


def publish(layout: ClaimLayout, staged: Sequence[str],
            after_first_move: Callable[[], None] = lambda: None) -> list[str]:
    """Move staged files to their final names, manifest first; returns the final URLs."""
    finals = [layout.final_url(s) for s in staged]
    manifest = {"token": layout.token, "files": [_rel(layout, f) for f in finals]}
    layout.lake.write_bytes(layout.manifest_key, json.dumps(manifest).encode())
    fs = layout.lake.filesystem()
    for i, (src, dst) in enumerate(zip(staged, finals, strict=True)):
        if layout.lake.kind == "local":
            Path(dst).parent.mkdir(parents=True, exist_ok=True)
        fs.mv(fs_path(src), fs_path(dst))
        if i == 0:
            after_first_move()
    drop_staging(layout)
    return finals


def forget_manifest(layout: ClaimLayout) -> None:
    """Drop the manifest of a claim whose keys are SUCCESS (its files are now final)."""
    if layout.lake.exists(layout.manifest_key):
        layout.lake.filesystem().rm(fs_path(layout.lake.url(layout.manifest_key)))


def total_size(layout: ClaimLayout, urls: Sequence[str]) -> int:
    """Bytes of the published files."""
    fs = layout.lake.filesystem()
    return sum(int(fs.size(fs_path(u))) for u in urls)
