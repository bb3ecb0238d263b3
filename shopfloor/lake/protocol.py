"""The lake's reader protocol: every row of a partition exactly once, even mid-merge.

S3 has no atomic rename of several objects, so a merge cannot swap a partition's files in
one step. Instead each merged partition holds one small object, ``_lake_state.json``,
written in one PUT (an atomic replace on a local folder):

- ``committed``: merge tokens whose ``merged-<token>-<n>.parquet`` files are live;
- ``retired``: files a committed merge replaced (deleted right after the commit);
- ``generation``: bumped on every write.

A file is *visible* when it is a Parquet data file, not retired, and not a merged file of
an uncommitted token. A merge moves its outputs in (invisible), commits by writing the
state (outputs visible, inputs retired: one atomic step), then deletes the inputs. A
reader reads the state, lists, reads the data, and reads the state again: if it changed
(a commit or a prune happened meanwhile), it starts over. Files that vanish while read
(inputs deleted after a commit the reader did not see) also make it start over.

Compaction adds files claim by claim. A claim's ``part-<claim>-<n>.parquet`` files are
invisible while its manifest exists under ``_compaction/<dataset>/manifests/``: from
before its first file moves in until its keys are recorded, and for a crashed claim until
it is cleaned (:mod:`shopfloor.compaction.recovery`). So a claim's files appear all at
once, and a crashed claim's partial output is never read. The set of manifests is part
of what the reader checks again at the end.

The extraction replaces a month through a manifest with a commit point
(:mod:`shopfloor.historian.publish`): before the commit its new files are not read,
after it its old files are not read, so a month is never seen half replaced or twice.

Folders and names beginning with ``_`` are ignored by Spark, Hive and pyarrow readers, so
the state never shows up as data. Plain globs (``read_parquet('.../*.parquet')``) do not
honour the state: they may see a merged partition twice for the seconds between the move
and the deletes. Readers that need exactly once go through :func:`read_partition`,
:func:`read_lake` or :func:`visible_files`.
"""

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from shopfloor.compaction.recovery import unfinished_claims
from shopfloor.errors import ShopfloorError
from shopfloor.lake.plan import MERGED_PREFIX, STATE_NAME, is_data_file
from shopfloor.storage import ObjectInfo, StorageLocation
from shopfloor.storage_engines import attach_duckdb

_MERGED = re.compile(rf"^{MERGED_PREFIX}([0-9a-f]{{32}})-\d+\.parquet$")
# A compaction claim's file: part-<token>[.<scope>]-<n>.parquet (ClaimLayout.filename_pattern).
_CLAIM_PART = re.compile(r"^part-([A-Za-z0-9_-]{1,64}(?:\.[A-Za-z0-9_-]{1,64})?)-\d+\.parquet$")
READ_ATTEMPTS = 20


@dataclass(frozen=True)
class PartitionState:
    """What ``_lake_state.json`` of one partition says (empty when there is none)."""

    generation: int = 0
    committed: frozenset[str] = field(default_factory=frozenset)
    retired: frozenset[str] = field(default_factory=frozenset)

    def to_bytes(self) -> bytes:
        return json.dumps({"generation": self.generation,
                           "committed": sorted(self.committed),
                           "retired": sorted(self.retired)}).encode()

    @classmethod
    def from_bytes(cls, data: bytes | None) -> "PartitionState":
        if not data:
            return cls()
        doc = json.loads(data)
        return cls(int(doc["generation"]), frozenset(doc["committed"]),
                   frozenset(doc["retired"]))


def state_key(partition: str) -> str:
    return f"{partition.rstrip('/')}/{STATE_NAME}"


def merged_token(key: str) -> str | None:
    """The merge token of a ``merged-<token>-<n>.parquet`` file, else ``None``."""
    m = _MERGED.match(key.rsplit("/", 1)[-1])
    return m.group(1) if m else None


def is_visible(key: str, state: PartitionState) -> bool:
    """Whether a reader honouring ``state`` reads the file ``key`` (lake key)."""
    if not is_data_file(key) or key.rsplit("/", 1)[-1] in state.retired:
        return False
    token = merged_token(key)
    return token is None or token in state.committed


def read_state(lake: StorageLocation, partition: str) -> tuple[PartitionState, bytes | None]:
    """The partition's state and its raw bytes (``None`` when it has none)."""
    try:
        raw = lake.read_bytes(state_key(partition))
    except FileNotFoundError:
        return PartitionState(), None
    return PartitionState.from_bytes(raw), raw


def write_state(lake: StorageLocation, partition: str, state: PartitionState) -> None:
    """Replace the state in one step: one PUT on S3, write-then-rename on a folder (a
    reader never sees half a file)."""
    tmp = f"{partition.rstrip('/')}/_lake_state.{uuid.uuid4().hex}.tmp"
    if lake.is_remote:
        lake.write_bytes(state_key(partition), state.to_bytes())
        return
    lake.write_bytes(tmp, state.to_bytes())
    lake.move(tmp, state_key(partition))


def _states(lake: StorageLocation, keys: Iterable[str]) -> dict[str, bytes | None]:
    out = {}
    for key in sorted(keys):
        try:
            out[key] = lake.read_bytes(key)
        except FileNotFoundError:
            out[key] = None
    return out


def _state_keys(objects: Iterable[ObjectInfo]) -> set[str]:
    return {o.key for o in objects if o.key.rsplit("/", 1)[-1] == STATE_NAME}


def _visible(objects: Iterable[ObjectInfo], states: Mapping[str, bytes | None]
             ) -> list[ObjectInfo]:
    parsed = {k.rpartition("/")[0]: PartitionState.from_bytes(v) for k, v in states.items()}
    return [o for o in objects
            if is_visible(o.key, parsed.get(o.key.rpartition("/")[0], PartitionState()))]


class _Changed(Exception):
    """The states moved while reading: read again."""


def dataset_of(prefix: str) -> str:
    """The dataset a prefix belongs to: its folders before the first ``name=value`` one
    (``datalog_v2/hiveperiod=2026-01-20/dstrct_code=D01`` -> ``datalog_v2``)."""
    parts = []
    for part in prefix.strip("/").split("/"):
        if "=" in part or not part:
            break
        parts.append(part)
    return "/".join(parts)


def is_committed(manifest: dict[str, Any]) -> bool:
    """Whether an extraction replace's manifest is past its commit point: readers see its
    new files and no longer its old ones. A manifest written before the commit point
    existed counts as committed (its run moved files in before deleting, as now)."""
    return bool(manifest.get("committed", True))


@dataclass(frozen=True)
class _Writers:
    """What writers in flight hide from readers of a dataset: the compaction claims with a
    manifest, and the files an extraction replace has not committed (its new files) or
    has committed away (its old files)."""

    claims: frozenset[str] = frozenset()
    manifests: tuple[tuple[str, bytes | None], ...] = ()
    hidden: frozenset[str] = frozenset()

    def hides(self, key: str) -> bool:
        return claim_of(key) in self.claims or key in self.hidden


def _extraction_hidden(lake: StorageLocation, dataset: str
                       ) -> tuple[tuple[tuple[str, bytes | None], ...], frozenset[str]]:
    keys = [o.key for o in lake.list_objects(f"_extraction/{dataset}/manifests")
            if o.key.endswith(".json")]
    raw = _states(lake, keys)
    hidden: set[str] = set()
    for body in raw.values():
        if not body:
            continue
        try:
            doc = json.loads(body)
        except ValueError:  # being written: the fingerprint check reads it again
            continue
        if is_committed(doc):
            hidden.update(doc.get("delete", []))
        else:
            hidden.update(dst for _, dst in doc.get("moves", []))
    return tuple(sorted(raw.items())), frozenset(hidden)


def _in_flight(lake: StorageLocation, prefix: str) -> _Writers:
    """What the writers in flight on ``prefix``'s dataset hide from its readers."""
    dataset = dataset_of(prefix)
    if not dataset or dataset.startswith("_"):
        return _Writers()
    try:
        claims = frozenset(unfinished_claims(lake, dataset))
    except ShopfloorError:  # not a folder name a compaction could have written
        claims = frozenset()
    manifests, hidden = _extraction_hidden(lake, dataset)
    return _Writers(claims, manifests, hidden)


def claim_of(key: str) -> str | None:
    """The compaction claim name of a ``part-<claim>-<n>.parquet`` file, else ``None``."""
    m = _CLAIM_PART.match(key.rsplit("/", 1)[-1])
    return m.group(1) if m else None


@dataclass(frozen=True)
class _Fingerprint:
    """What a reader checks again after reading: partition states and claims in flight."""

    states: dict[str, bytes | None]
    in_flight: _Writers

    def unchanged(self, lake: StorageLocation, prefix: str) -> bool:
        return (_states(lake, self.states) == self.states
                and _in_flight(lake, prefix) == self.in_flight)


def _snapshot(lake: StorageLocation, prefix: str) -> tuple[list[ObjectInfo], _Fingerprint]:
    # States and claims first, then the listing: a commit after they were read shows up
    # as a changed fingerprint at the end, never as a silently wrong set of files.
    before = _states(lake, _state_keys(lake.list_objects(prefix)))
    in_flight = _in_flight(lake, prefix)
    objects = list(lake.list_objects(prefix))
    if _state_keys(objects) != set(before):
        raise _Changed
    visible = [o for o in _visible(objects, before) if not in_flight.hides(o.key)]
    return visible, _Fingerprint(before, in_flight)


def visible_files(lake: StorageLocation, prefix: str) -> list[ObjectInfo]:
    """The visible data files under ``prefix`` (a partition or a whole dataset) at one
    instant. An engine reading them later may find some deleted by a merge committed
    since: it should then call again (what :func:`read_lake` does)."""
    for _ in range(READ_ATTEMPTS):
        try:
            return _snapshot(lake, prefix)[0]
        except _Changed:
            continue
    raise ShopfloorError(f"{prefix!r} kept changing while listed")


def _missing(exc: duckdb.Error) -> bool:
    text = str(exc)
    return isinstance(exc, duckdb.IOException) and any(
        s in text for s in ("No files found", "404", "No such file", "does not exist",
                            "Cannot open file"))


def read_lake(lake: StorageLocation, prefix: str, columns: str = "*",
              con: duckdb.DuckDBPyConnection | None = None) -> pa.Table:
    """Every visible row under ``prefix`` exactly once, as an Arrow table.

    Columns are unioned by name across files (a partition not merged yet may still hold
    several schemas); hive partition folders become columns. ``columns`` is a DuckDB
    select list (our callers pass constants). Reads again when a merge committed, or
    deleted a file, while it read.
    """
    own = con is None
    con = con or duckdb.connect()
    try:
        if own:
            attach_duckdb(con, [lake])
        for _ in range(READ_ATTEMPTS):
            try:
                files, before = _snapshot(lake, prefix)
            except _Changed:
                continue
            if not files:
                table = pa.table({})
            else:
                try:
                    table = con.execute(
                        f"SELECT {columns} FROM read_parquet($f, union_by_name=true, "  # noqa: S608
                        "hive_partitioning=true)", {"f": [lake.url(o.key) for o in files]},
                    ).to_arrow_table()
                except duckdb.Error as exc:
                    if _missing(exc):
                        continue
                    raise
            if before.unchanged(lake, prefix):
                return table
        raise ShopfloorError(f"{prefix!r} kept changing while read")
    finally:
        if own:
            con.close()


def read_partition(lake: StorageLocation, partition: str, columns: str = "*",
                   con: duckdb.DuckDBPyConnection | None = None) -> pa.Table:
    """Every visible row of one partition exactly once (see :func:`read_lake`)."""
    return read_lake(lake, partition.rstrip("/"), columns, con)


def state_prune(state: PartitionState, present: Iterable[str]) -> PartitionState:
    """The state after deletes: retired names that are gone and committed tokens without a
    file left are dropped (a new generation)."""
    names = {k.rsplit("/", 1)[-1] for k in present}
    tokens = {merged_token(n) for n in names} - {None}
    return PartitionState(state.generation + 1,
                          frozenset(t for t in state.committed if t in tokens),
                          frozenset(r for r in state.retired if r in names))


def state_commit(state: PartitionState, token: str, inputs: Iterable[str]) -> PartitionState:
    """The state that makes ``token``'s outputs visible and retires ``inputs``."""
    return PartitionState(state.generation + 1, state.committed | {token},
                          state.retired | {k.rsplit("/", 1)[-1] for k in inputs})


def describe(state: PartitionState) -> dict[str, Any]:
    return {"generation": state.generation, "committed": sorted(state.committed),
            "retired": len(state.retired)}
