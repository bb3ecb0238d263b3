"""S3 compaction (seed s3_datalog_processor): register keys, then get_keys -> compact ->
update_status, exactly once, for every district with a backlog."""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from prefect import Flow, flow, get_run_logger
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.client.schemas.objects import FlowRun
from prefect.logging.loggers import flow_run_logger
from prefect.states import State
from pydantic import Field

from blocks.resolve import require_blocks
from shopfloor.compaction.faults import pause_hook_from_env
from shopfloor.compaction.keys import check_prefix
from shopfloor.compaction.outcome import (
    Served,
    artifact_description,
    metric_rows,
    partitions,
    registration_description,
    registration_verdict,
    summarise,
    verdict,
)
from shopfloor.errors import DataIntegrityError
from shopfloor.params import (
    DistrictCode,
    OptionalStoragePrefix,
    RamLimit,
    StoragePrefix,
)
from tasks.outcomes import ON_FAILURE, conclude, emit
from tasks.runtime import run_token
from tasks.s3_compaction import (
    check_storage,
    claim_renewal,
    claimable_districts_task,
    compact,
    ended_claimers,
    get_keys,
    recover_leftovers,
    register_new_keys,
    release_keys,
    release_run_claims,
    update_status,
)
from tasks.variables import COMPACTION_DISTRICTS, from_variable

MAX_KEYS_PER_RUN = 100_000
CLAIM_TTL_MINUTES = 60
# A compaction run is stopped (Failed, its claims released by the hook below) well
# before its claim could go stale: 45 minutes against the default 60-minute TTL.
COMPACTION_TIMEOUT_S = 45 * 60
# Registration lists only what is new; ten minutes is far beyond a normal run and well
# inside its 15-minute schedule, so a hung listing never piles up behind itself.
REGISTRATION_TIMEOUT_S = 10 * 60
PUBLISHED_EVENT = "shopfloor.partition.published"

KeyLimit = Annotated[int, Field(ge=1, le=MAX_KEYS_PER_RUN)]
TzOffsetHours = Annotated[float, Field(ge=-14, le=14)]
ClaimTtlMinutes = Annotated[int, Field(ge=0)]
OverlapHours = Annotated[int, Field(ge=0, le=24 * 7)]


@flow(name="register-s3-keys", timeout_seconds=REGISTRATION_TIMEOUT_S,
      on_failure=ON_FAILURE)
def register_s3_keys(
    raw_logs: str = "shopfloor-raw-logs",
    prefix: OptionalStoragePrefix = "",
    distrik: DistrictCode | None = None,
    metadata_db: str = "shopfloor-metadata-db",
    overlap_hours: OverlapHours = 2,
    full_listing: bool = False,
) -> dict[str, int]:
    """List the raw JSON objects that may be new under a prefix and register the new ones
    as PENDING.

    Incremental: per stream (a folder of ``YYYYMMDDHH`` hour folders, e.g.
    ``dstrct_code=D01/line1-plc``) only the hour folders from ``overlap_hours`` before the
    last one listed are listed again (docs/s3_compaction.md). Idempotent: keys already
    registered are left as they are.

    Ends Completed when keys were registered, ``Idle`` when nothing was new,
    ``Degraded`` when some JSON keys name no district (skipped), Failed when every
    JSON key listed was skipped.

    Args:
        raw_logs: S3Bucket or LocalFileSystem block where the raw JSON lands.
        prefix: folder inside the raw logs to list ("" lists everything).
        distrik: district of every listed key; none takes it from the key layout
            (``dstrct_code=XXXX/``, ``distrik=XXXX/`` or a leading ``XXXX/`` folder).
        metadata_db: SqlAlchemyConnector block holding the ``s3_object`` registry.
        overlap_hours: hour folders before each stream's last listed one that are listed
            again (objects landing late or out of key order within that window).
        full_listing: list every stream from its start; finds objects written late into
            hour folders older than the overlap (run it daily).
    """
    prefix = check_prefix(prefix)  # without the trailing "/"; the type refused the rest
    counts = register_new_keys(raw_logs, prefix, distrik, metadata_db, overlap_hours,
                               full_listing)
    create_table_artifact(metric_rows(counts), key="register-s3-keys",
                          description=registration_description(counts, prefix, raw_logs))
    return conclude(registration_verdict(counts), counts)


def _configured(districts: list[str]) -> list[str]:
    """The claimable districts the Prefect Variable ``shopfloor_compaction_districts``
    allows (a list of codes, changed without a deploy); all of them when it is unset."""
    allowed = from_variable(COMPACTION_DISTRICTS, None, None, list[DistrictCode] | None)
    if allowed is None:
        return districts
    wanted = set(allowed)
    kept = [d for d in districts if d in wanted]
    if len(kept) < len(districts):
        get_run_logger().info("Prefect Variable %s leaves out districts with a backlog: %s",
                              COMPACTION_DISTRICTS,
                              ", ".join(d for d in districts if d not in kept))
    return kept


@dataclass(frozen=True)
class _Run:
    """What every district of one run shares."""

    raw_logs: str
    lake: str
    target_prefix: str
    metadata_db: str
    tz_offset_hours: float
    ram_limit: str
    run_id: str
    claim_ttl_minutes: int
    ended: list[str]  # runs Prefect knows are over: their claims are taken at once


def _serve(run: _Run, districts: list[str], budget: int) -> Served:
    """get_keys -> compact -> update_status per district, the oldest backlog first,
    within ``budget`` keys; a district that fails gives its keys back and the others
    are still served."""
    logger = get_run_logger()
    pause = pause_hook_from_env()  # fault injection, docs/s3_compaction.md; normally None
    progress = create_progress_artifact(0.0, key="s3-compaction-progress",
                                        description=f"s3-compaction of {len(districts)} "
                                                    "district(s)")
    served = Served()
    for i, code in enumerate(districts):
        if budget - served.claimed <= 0:
            logger.info("key limit reached; %d districts wait for the next run",
                        len(districts) - i)
            break
        claimed = get_keys(run.metadata_db, code, budget - served.claimed, run.run_id,
                           run.claim_ttl_minutes, run.ended)
        if not claimed:
            continue
        served.claimed += len(claimed)
        served.districts.append(code)
        try:
            result = compact(run.raw_logs, run.lake, run.target_prefix, code,
                             run.tz_offset_hours, run.ram_limit, run.run_id, claimed,
                             run.metadata_db)
            if pause:
                pause("after_compact")
            update_status(run.metadata_db, run.lake, run.target_prefix, run.run_id, result,
                          code)
        except Exception as exc:
            release_keys(run.metadata_db, run.run_id, f"{type(exc).__name__}: {exc}")
            if isinstance(exc, TimeoutError):
                raise
            logger.error("district %s failed: %s", code, exc)
            served.failures.append(f"{code}: {exc}")
            served.integrity |= isinstance(exc, DataIntegrityError)
            continue  # the other districts still get served
        served.results.append(result)
        if result.files:
            emit(PUBLISHED_EVENT, f"shopfloor.district.{code}",
                 {"partitions": partitions(result), "rows": result.rows_out,
                  "files": len(result.files)}, **{"shopfloor.district": code})
        update_progress_artifact(progress, 100.0 * (i + 1) / len(districts))
    update_progress_artifact(progress, 100.0)
    return served


def release_claims_on_exit(flow_obj: Flow, run: FlowRun, state: State) -> None:
    """State hook (crashed, cancelled, failed): give back every key the run still holds,
    so the next run takes them at once instead of after the claim TTL."""
    params = run.parameters or {}
    metadata_db = params.get("metadata_db") or "shopfloor-metadata-db"
    n = release_run_claims(metadata_db, str(run.id),
                           f"run {run.id} ended {state.name}: {state.message or ''}".strip())
    flow_run_logger(run, flow_obj).warning("released %d keys held by run %s (%s)", n, run.id,
                                           state.name)


_ON_EXIT: list[Callable[[Flow, FlowRun, State], None]] = [release_claims_on_exit]


@flow(name="s3-compaction", timeout_seconds=COMPACTION_TIMEOUT_S, on_crashed=_ON_EXIT,
      on_cancellation=_ON_EXIT, on_failure=[*_ON_EXIT, *ON_FAILURE])
def s3_compaction(
    distrik: DistrictCode | None = None,
    key_limit_per_run: KeyLimit = 1000,
    ram_limit: RamLimit = "10GB",
    raw_logs: str = "shopfloor-raw-logs",
    lake: str = "shopfloor-lake",
    target_prefix: StoragePrefix = "datalog_v2",
    metadata_db: str = "shopfloor-metadata-db",
    tz_offset_hours: TzOffsetHours = 8,
    claim_ttl_minutes: ClaimTtlMinutes = CLAIM_TTL_MINUTES,
) -> dict[str, Any]:
    """Compact claimed raw JSON objects into Parquet partitioned by hiveperiod and dstrct_code.

    Per district: get_keys claims keys with this run's id, compact writes their records
    once (output names derive from the claim, so retries and take-overs replace instead
    of adding; the claim is checked and renewed immediately before publishing), then
    update_status marks them SUCCESS or QUARANTINED and ``shopfloor.partition.published``
    is emitted. Without ``distrik`` every district with PENDING (or stale) keys is served,
    the oldest backlog first, within ``key_limit_per_run`` keys in total. Claims are
    renewed every TTL/3 while the run works and released if it crashes, is cancelled or
    fails. Safe to run concurrently.

    Ends Completed, ``Idle`` (nothing pending), ``Degraded`` (some objects quarantined),
    or Failed (every object quarantined, a district failed, or a claim was taken over).

    Args:
        distrik: district whose PENDING keys to compact; none serves every district
            with a backlog (only those listed in the Prefect Variable
            ``shopfloor_compaction_districts`` when it is set). Records without
            ``dstrct_code`` are partitioned under the district their key was registered
            with.
        key_limit_per_run: most keys one run claims, over all districts together.
        ram_limit: DuckDB memory limit (e.g. "10GB"); larger batches spill to disk.
        raw_logs: S3Bucket or LocalFileSystem block holding the raw JSON.
        lake: S3Bucket or LocalFileSystem block the Parquet goes to.
        target_prefix: folder inside the lake for the partitions.
        metadata_db: SqlAlchemyConnector block holding ``s3_object`` and ``quarantine``.
        tz_offset_hours: offset of ``datetime_wita`` from UTC (8 = WITA).
        claim_ttl_minutes: a claim not renewed for this long is taken over by the next
            run (0: at once).
    """
    started = time.monotonic()
    # One check of the three block names, before any claim; the tasks resolve them.
    require_blocks(raw_logs, lake, metadata_db)
    check_storage(raw_logs, lake)
    run_id = run_token()  # the claim token
    ended = ended_claimers(metadata_db)
    # Whatever earlier runs left (crashed claims, chains of take-overs) goes first.
    recover_leftovers(lake, target_prefix, metadata_db, run_id, claim_ttl_minutes, ended)
    districts = [distrik] if distrik else _configured(
        claimable_districts_task(metadata_db, claim_ttl_minutes, ended))
    spec = _Run(raw_logs, lake, target_prefix, metadata_db, tz_offset_hours, ram_limit,
                run_id, claim_ttl_minutes, ended)
    with claim_renewal(metadata_db, run_id, claim_ttl_minutes):
        served = _serve(spec, districts, key_limit_per_run)
    summary = summarise(distrik or ",".join(served.districts), served,
                        time.monotonic() - started)
    create_table_artifact(metric_rows(summary), key="s3-compaction",
                          description=artifact_description(served, target_prefix))
    decided = verdict(summary, served)
    get_run_logger().info("%s: %s", decided.kind, decided.message or "done")
    return conclude(decided, summary)
