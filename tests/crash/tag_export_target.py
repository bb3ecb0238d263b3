"""The tag-lake-export step for the crash harness: one export of a SQLite warehouse's
tag samples into a local-folder lake, with the fault hook of the environment (the
flow's task does the same around it)."""

import uuid
from datetime import datetime

from shopfloor.compaction.faults import pause_hook_from_env
from shopfloor.db.engine import make_engine
from shopfloor.db.schema import get_tables
from shopfloor.storage import StorageLocation
from shopfloor.tags.lake_export import export

PREFIX = "tag_samples"


def run(root: str, db_url: str, now: str) -> None:
    """Export what was ingested up to ``now`` less the lag (a fresh token per run)."""
    engine = make_engine(db_url)
    try:
        export(engine, get_tables(), StorageLocation("local", root), PREFIX,
               datetime.fromisoformat(now), uuid.uuid4().hex,
               fault=pause_hook_from_env() or (lambda step: None))
    finally:
        engine.dispose()
