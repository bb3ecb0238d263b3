"""Merge one closed partition's small files, exactly once, and recover crashed merges.

Under the partition's claim (:mod:`shopfloor.lake.claims`):

1. **recover** what an earlier merge of this partition left (its manifest says what:
   roll forward if its token is committed in the partition state, else back);
2. **plan** on the visible files (:mod:`shopfloor.lake.protocol`), leaving out files a
   writer is still publishing (listed in a live compaction or extraction manifest);
3. **stage** one ``merged-<token>-<n>.parquet`` per group into
   ``_lake_merge/<prefix>/staging/<partition id>/<token>/`` with the unified schema, and
   check its rows against the inputs' footers;
4. **manifest** ``_lake_merge/<prefix>/manifests/<partition id>/<token>.json``: inputs,
   outputs, the unified schema;
5. **move** the outputs into the partition (invisible: the token is not committed);
6. **fence** (renew the claim; refuse if lost or a writer started publishing there) and
   **commit**: one write of the partition state makes the outputs visible and retires
   the inputs;
7. **delete** the inputs, prune the state, drop the staging and, last, the manifest.

A crash before 6 leaves outputs nobody reads (rolled back); a crash after 6 leaves
retired inputs nobody reads (rolled forward). Either way every row is read once.
"""

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import duckdb
from sqlalchemy import Engine

from shopfloor.compaction import duck
from shopfloor.compaction.layout import sql_string
from shopfloor.db.schema import Tables
from shopfloor.errors import ShopfloorError, first_line
from shopfloor.lake import claims, protocol
from shopfloor.lake.plan import (
    MERGED_PREFIX,
    PartitionPlan,
    group_partitions,
    is_closed,
    is_data_file,
    partition_day,
    plan_partition,
)
from shopfloor.lake.schema import UnifiedSchema, select_list, unify
from shopfloor.storage import ObjectInfo, StorageLocation

AREA = "_lake_merge"
WRITER_AREAS = ("_compaction", "_extraction")  # their manifests name files in flight
# The extraction's date layout sorts by (tag, ts) (tag is then a column in the file);
# its tag layout has tag only in the path, so (tagid, ts) there; the tag lake export's
# files have (tag_id, ts).
SORT_KEYS = (("tag", "ts"), ("tagid", "ts"), ("tag_id", "ts"), ("tagpath", "ts"),
             ("datetime_wita",))
Hook = Callable[[str], None]


def no_hook(point: str) -> None:
    """The default hook: do nothing (fault injection passes a pausing one)."""


@dataclass(frozen=True)
class MergeSpec:
    """One dataset's maintenance settings."""

    lake: StorageLocation
    prefix: str
    engine: Engine
    tables: Tables
    target_bytes: int = 128 * 2**20
    min_files: int = 2
    claim_ttl: timedelta = timedelta(minutes=60)
    ram_limit: str = "2GB"
    run_id: str = ""
    ended: tuple[str, ...] = ()  # claim holders whose runs are known to be over

    def holder(self, token: str) -> str:
        """The claim value of this run's merge attempt ``token``."""
        return claims.holder(token, self.run_id)

    def area(self, what: str, partition: str) -> str:
        pid = claims.claim_name(self.prefix, partition).split(":", 1)[1]
        return f"{AREA}/{self.prefix}/{what}/{pid}"


@dataclass
class PartitionResult:
    """What happened to one partition."""

    prefix: str
    partition: str
    status: str  # merged | skipped | failed
    files_in: int = 0
    files_out: int = 0
    rows: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    unified: str = ""
    recovered: list[str] = field(default_factory=list)
    message: str = ""
    seconds: float = 0.0

    def row(self) -> dict[str, Any]:
        return {k: v if not isinstance(v, list) else ", ".join(v)
                for k, v in self.__dict__.items()}


# -- writers in flight ---------------------------------------------------------------
def busy_files(lake: StorageLocation, prefix: str) -> set[str]:
    """Files a compaction or an extraction manifest still names: their writer may yet
    delete or replace them, so they are not merged (a merge would keep their rows twice)."""
    busy: set[str] = set()
    for area in WRITER_AREAS:
        for obj in lake.list_objects(f"{area}/{prefix}/manifests"):
            try:
                doc = json.loads(lake.read_bytes(obj.key))
            except (FileNotFoundError, ValueError):
                continue  # finished meanwhile, or being written
            busy.update(doc.get("files", []))
            busy.update(dst for _, dst in doc.get("moves", []))
            busy.update(doc.get("delete", []))
    return busy


def _partition_busy(spec: MergeSpec, partition: str) -> bool:
    return any(k.rpartition("/")[0] == partition for k in busy_files(spec.lake, spec.prefix))


# -- recovery ------------------------------------------------------------------------
def recover(lake: StorageLocation, manifest_key: str) -> str:
    """Finish or undo a merge from its manifest; returns ``forward`` or ``back``.

    Idempotent: a crash inside recovery is recovered by the next call.
    """
    doc = json.loads(lake.read_bytes(manifest_key))
    partition, token = doc["partition"], doc["token"]
    state, _ = protocol.read_state(lake, partition)
    if token in state.committed:
        lake.delete(doc["inputs"])
        _prune(lake, partition)
        way = "forward"
    else:
        lake.delete(doc["outputs"])  # never visible: the token was not committed
        way = "back"
    lake.remove_tree(doc["staging"])
    lake.delete([manifest_key])  # last: a crash before this leaves it for the next run
    return way


def _prune(lake: StorageLocation, partition: str) -> None:
    state, _ = protocol.read_state(lake, partition)
    present = [o.key for o in lake.list_objects(partition) if "/" not in
               o.key[len(partition) + 1:]]
    pruned = protocol.state_prune(state, present)
    if (pruned.committed, pruned.retired) != (state.committed, state.retired):
        protocol.write_state(lake, partition, pruned)


def recover_partition(spec: MergeSpec, partition: str, token: str) -> list[str]:
    """Recover every earlier merge of ``partition`` (caller holds its claim) and drop
    staging left without a manifest; returns how each manifest was recovered."""
    lake = spec.lake
    ways = [recover(lake, o.key)
            for o in lake.list_objects(spec.area("manifests", partition))]
    folders, _ = lake.list_folder(spec.area("staging", partition))
    for folder in folders:
        if not folder.endswith("/" + token):
            lake.remove_tree(folder)
    return ways


def pending_partitions(lake: StorageLocation, prefix: str) -> list[str]:
    """Partitions with a merge manifest left behind (a crashed or running merge)."""
    out = set()
    for obj in lake.list_objects(f"{AREA}/{prefix}/manifests"):
        try:
            out.add(json.loads(lake.read_bytes(obj.key))["partition"])
        except (FileNotFoundError, ValueError, KeyError):
            continue
    return sorted(out)


# -- staging -------------------------------------------------------------------------
def _schemas(con: duckdb.DuckDBPyConnection, urls: Sequence[str]
             ) -> dict[str, dict[str, str]]:
    """Each file's schema (name -> DuckDB type), one DESCRIBE per distinct footer."""
    rows = con.execute(
        "SELECT file_name, name, type, converted_type, logical_type, num_children "
        "FROM parquet_schema($f)", {"f": list(urls)}).fetchall()
    signature: dict[str, list[tuple]] = {}
    for file_name, *rest in rows:
        sig = signature.setdefault(file_name, [])
        sig.append(tuple(rest) if sig else (None, *rest[1:]))  # the root's name varies
    described: dict[tuple, dict[str, str]] = {}
    out = {}
    for url in urls:
        sig = tuple(signature.get(url, ()))
        if sig not in described:
            described[sig] = {r[0]: r[1] for r in con.execute(
                "DESCRIBE SELECT * FROM read_parquet($f, hive_partitioning=false)",
                {"f": [url]}).fetchall()}
        out[url] = described[sig]
    return out


def _rows(con: duckdb.DuckDBPyConnection, urls: Sequence[str]) -> int:
    got = con.execute("SELECT coalesce(sum(num_rows), 0) FROM parquet_file_metadata($f)",
                      {"f": list(urls)}).fetchone()
    return int(got[0]) if got else 0


def sort_columns(unified: UnifiedSchema) -> tuple[str, ...]:
    """Keys the merged rows are sorted by, so row-group statistics prune well: tag and time
    for the extraction's output, time for the compaction's."""
    for keys in SORT_KEYS:
        if all(k in unified.columns for k in keys):
            return keys
    return ()


def group_sql(schemas: dict[str, dict[str, str]], files: Sequence[str],
              unified: UnifiedSchema) -> tuple[str, dict[str, list[str]]]:
    """The SELECT reading ``files`` with the unified schema (one branch per file schema)
    and its bound file lists."""
    by_schema: dict[str, list[str]] = {}
    lists: dict[str, dict[str, str]] = {}
    for url in files:
        sel = select_list(schemas[url], unified)
        by_schema.setdefault(sel, []).append(url)
        lists[sel] = schemas[url]
    params, branches = {}, []
    for i, (sel, urls) in enumerate(by_schema.items()):
        params[f"f{i}"] = urls
        branches.append(f"SELECT {sel} FROM read_parquet($f{i}, hive_partitioning=false)")  # noqa: S608
    sql = "\nUNION ALL\n".join(branches)
    keys = sort_columns(unified)
    if keys:
        order = ", ".join(f'"{k}"' for k in keys)
        sql = f"SELECT * FROM ({sql}) ORDER BY {order}"  # noqa: S608
    return sql, params


def _stage(con: duckdb.DuckDBPyConnection, spec: MergeSpec, plan: PartitionPlan,
           token: str, staging: str) -> tuple[list[str], int, UnifiedSchema]:
    lake = spec.lake
    urls = {f.key: lake.url(f.key) for g in plan.groups for f in g}
    schemas = _schemas(con, list(urls.values()))
    unified = unify(schemas[u] for u in urls.values())
    staged = []
    for i, group in enumerate(plan.groups):
        key = f"{staging}/{MERGED_PREFIX}{token}-{i}.parquet"
        lake.make_parent(key)
        sql, params = group_sql(schemas, [urls[f.key] for f in group], unified)
        con.execute(f"COPY ({sql}) TO {sql_string(lake.url(key))} "
                    "(FORMAT parquet, COMPRESSION zstd)", params)
        staged.append(key)
    rows_in = _rows(con, list(urls.values()))
    rows_out = _rows(con, [lake.url(k) for k in staged])
    if rows_in != rows_out:
        raise ShopfloorError(f"merged files hold {rows_out} rows, the inputs {rows_in}")
    return staged, rows_in, unified


# -- one partition -------------------------------------------------------------------
def plan_now(spec: MergeSpec, partition: str) -> PartitionPlan | None:
    """The partition's plan from its visible files (the caller checked that no writer
    is publishing into it)."""
    files = protocol.visible_files(spec.lake, partition)
    files = [f for f in files if f.key.rpartition("/")[0] == partition]
    return plan_partition(partition, files, spec.target_bytes, spec.min_files)


def _publish(spec: MergeSpec, partition: str, token: str, plan: PartitionPlan,
             staged: list[str], unified: UnifiedSchema, hook: Hook) -> list[str]:
    lake = spec.lake
    outputs = [f"{partition}/{k.rsplit('/', 1)[-1]}" for k in staged]
    manifest_key = f"{spec.area('manifests', partition)}/{token}.json"
    doc = {"token": token, "run_id": spec.run_id, "partition": partition,
           "inputs": plan.inputs, "outputs": outputs,
           "staging": staged[0].rpartition("/")[0], "unified": unified.changes}
    lake.write_bytes(manifest_key, json.dumps(doc).encode())
    for i, (src, dst) in enumerate(zip(staged, outputs, strict=True)):
        lake.move(src, dst)
        if i == 0:
            hook("mid_publish")
    claims.renew(spec.engine, spec.tables, claims.claim_name(spec.prefix, partition),
                 spec.holder(token))
    if _partition_busy(spec, partition):
        raise ShopfloorError("a writer started publishing into the partition; merge undone")
    state, _ = protocol.read_state(lake, partition)
    protocol.write_state(lake, partition, protocol.state_commit(state, token, plan.inputs))
    hook("after_publish")
    recover(lake, manifest_key)  # rolls forward: deletes the inputs, prunes, cleans up
    return outputs


def merge_partition(spec: MergeSpec, partition: str, token: str, hook: Hook = no_hook
                    ) -> PartitionResult:
    """Merge one partition under its claim (see the module docstring); ``token`` is 32
    lower-case hex digits, new for every attempt."""
    started = time.monotonic()
    result = PartitionResult(spec.prefix, partition, "skipped")
    name = claims.claim_name(spec.prefix, partition)
    if not claims.take(spec.engine, spec.tables, name, spec.holder(token), spec.claim_ttl,
                       ended=spec.ended):
        result.message = "claimed by another run"
        return result
    try:
        result.recovered = recover_partition(spec, partition, token)
        if _partition_busy(spec, partition):
            result.message = "a writer is publishing into it; merged by a later run"
            return result
        plan = plan_now(spec, partition)
        if plan is None:
            result.message = "nothing to merge"
            return result
        _merge_planned(spec, partition, token, plan, hook, result)
    except Exception as exc:  # one partition's failure never stops the others
        result.status, result.message = "failed", first_line(exc)
        _undo(spec, partition, token)
    finally:
        claims.release(spec.engine, spec.tables, name, spec.holder(token))
        result.seconds = round(time.monotonic() - started, 3)
    return result


def _merge_planned(spec: MergeSpec, partition: str, token: str, plan: PartitionPlan,
                   hook: Hook, result: PartitionResult) -> None:
    staging = f"{spec.area('staging', partition)}/{token}"
    with duck.spill_folder() as temp_dir:
        con = duck.connect(spec.ram_limit, temp_dir, [spec.lake])
        try:
            staged, rows, unified = _stage(con, spec, plan, token, staging)
        finally:
            con.close()
    hook("after_stage")
    outputs = _publish(spec, partition, token, plan, staged, unified, hook)
    result.status = "merged"
    result.files_in, result.files_out, result.rows = len(plan.inputs), len(outputs), rows
    result.bytes_in = plan.bytes_in
    result.bytes_out = sum(spec.lake.size(k) for k in outputs)
    result.unified = unified.describe()


def _undo(spec: MergeSpec, partition: str, token: str) -> None:
    """After a failure: recover this attempt's manifest now (back if not committed,
    forward if it was) and drop its staging, but only while the claim is still ours (a
    run that took it over owns the partition's state now). What cannot be done now, the
    next run does from the manifest."""
    try:
        claims.renew(spec.engine, spec.tables, claims.claim_name(spec.prefix, partition),
                     spec.holder(token))
        manifest = f"{spec.area('manifests', partition)}/{token}.json"
        if spec.lake.exists(manifest):
            recover(spec.lake, manifest)
        spec.lake.remove_tree(f"{spec.area('staging', partition)}/{token}")
    except Exception:  # noqa: S110 - the manifest stays; the next run recovers it
        pass


# -- a dataset -----------------------------------------------------------------------
def candidates(spec: MergeSpec, objects: Sequence[ObjectInfo], today: Any,
               grace_days: int) -> tuple[list[str], list[str]]:
    """Closed partitions worth a look (enough small files in a raw listing), and the
    partitions whose path names no day."""
    worth, undated = [], []
    for partition, files in group_partitions(objects).items():
        if not is_closed(partition, today, grace_days):
            if partition_day(partition) is None:
                undated.append(partition)
            continue
        if plan_partition(partition, files, spec.target_bytes, spec.min_files):
            worth.append(partition)
    return worth, undated


def maintain(spec: MergeSpec, today: Any, grace_days: int, new_token: Callable[[], str],
             max_partitions: int = 10_000, hook: Hook = no_hook) -> list[PartitionResult]:
    """Recover crashed merges, then merge the closed partitions of ``spec.prefix`` worth
    merging (at most ``max_partitions``); one result per partition touched."""
    objects = [o for o in spec.lake.list_objects(spec.prefix) if is_data_file(o.key)]
    worth, _ = candidates(spec, objects, today, grace_days)
    todo = sorted(set(pending_partitions(spec.lake, spec.prefix)) | set(worth))
    return [merge_partition(spec, p, new_token(), hook) for p in todo[:max_partitions]]
