"""Publishing a claim's Parquet files, and removing what an unfinished claim left behind.

Order of a publish: write the manifest (the list of final files), move the staged
files to their final names, drop the staging folder, and only then (in the flow) mark
the keys SUCCESS. A claim whose keys never reached SUCCESS is cleaned from its manifest
by whoever takes it over, so its partial output never survives beside the new output.

Everything here works on lake keys through :class:`~shopfloor.storage.StorageLocation`,
so the same code runs on a local folder and on a bucket.
"""

import json
from collections.abc import Callable, Sequence

from shopfloor.compaction.layout import ClaimLayout


def clean_claim(layout: ClaimLayout) -> int:
    """Delete the final files listed in the claim's manifest, its staging and its manifest.

    Safe to repeat, and a no-op for a claim that wrote nothing. Returns how many files
    the manifest listed (files never moved into place are simply not there).
    """
    lake = layout.lake
    listed: list[str] = []
    if lake.exists(layout.manifest_key):
        listed = json.loads(lake.read_bytes(layout.manifest_key))["files"]
        lake.delete(listed)
    lake.remove_tree(layout.staging_key)
    # The manifest goes last: a crash before this line leaves it for the next cleaner.
    lake.delete([layout.manifest_key])
    return len(listed)


def drop_staging(layout: ClaimLayout) -> None:
    """Remove the claim's staging folder (after a publish, or before a rewrite)."""
    layout.lake.remove_tree(layout.staging_key)


def publish(layout: ClaimLayout, staged: Sequence[str],
            after_first_move: Callable[[], None] = lambda: None) -> list[str]:
    """Move staged files (URLs as DuckDB returned them) to their final names, manifest
    first; returns the final keys."""
    lake = layout.lake
    finals = [layout.final_key(s) for s in staged]
    manifest = {"token": layout.token, "files": finals}
    lake.write_bytes(layout.manifest_key, json.dumps(manifest).encode())
    pairs = [(layout.staged_key(src), dst) for src, dst in zip(staged, finals, strict=True)]
    if pairs:
        lake.move(*pairs[0])
        after_first_move()
        # The rest at once: on S3 concurrent server-side copies and bulk deletes.
        lake.move_many(pairs[1:])
    drop_staging(layout)
    return finals


def forget_manifest(layout: ClaimLayout) -> None:
    """Drop the manifest of a claim whose keys are SUCCESS (its files are now final)."""
    layout.lake.delete([layout.manifest_key])

