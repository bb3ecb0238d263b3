"""Tasks of the S3 compaction flows: register keys, get_keys -> compact -> update_status."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from prefect import get_run_logger, task

from shopfloor.compaction import output
from shopfloor.compaction.claims import (
    ClaimedKey,
    claim_keys,
    claimable_districts,
    claiming_runs,
    fence,
    holdings,
    release_claim,
    renew_claim,
)
from shopfloor.compaction.compact import (
    CompactionSpec,
    CompactResult,
    compact_claim,
    no_fence,
    no_hook,
)
from shopfloor.compaction.faults import pause_hook_from_env
from shopfloor.compaction.layout import ClaimLayout
from shopfloor.compaction.recovery import Recovery, recover
from shopfloor.compaction.registration import register
from shopfloor.compaction.renewal import ClaimRenewal, renewal_interval
from shopfloor.compaction.status import record_outcome
from shopfloor.compaction.tags import field_tags
from shopfloor.db.engine import check_connection, write_transaction
from shopfloor.db.types import utcnow
from shopfloor.errors import first_line
from shopfloor.modbus.tag_points import ensure_tag_tables
from shopfloor.tags.registry import register_tags
from tasks import runtime
from tasks.runtime import LIVE, RETRIED, RETRIED_ONCE


@task(name="register-keys", **RETRIED, **LIVE)
def register_new_keys(raw_logs: str, prefix: str, district: str | None, metadata_db: str,
                      overlap_hours: int = 2, full_listing: bool = False) -> dict[str, int]:
    """List what may be new under ``prefix`` and insert the new JSON objects as PENDING.

    Args:
        raw_logs: storage block (S3Bucket or LocalFileSystem) of the raw JSON.
        prefix: folder inside the storage to list.
        district: district of every listed key; ``None`` takes it from the key layout.
        metadata_db: SqlAlchemyConnector block holding ``s3_object`` and ``s3_listing``.
        overlap_hours: hour folders re-listed before each stream's last one.
        full_listing: list every stream from its start (catches late objects in old hours).
    """
    logger = get_run_logger()
    engine = runtime.engine(metadata_db)
    check_connection(engine, metadata_db)
    reg = register(runtime.storage(raw_logs), engine, runtime.tables(), prefix, district,
                   overlap_hours, full_listing)
    c = reg.counts
    if reg.unknown:
        logger.warning("%d JSON keys name no district (e.g. %r): land them under "
                       "dstrct_code=<code>/ or pass distrik=", len(reg.unknown), reg.unknown[0])
    logger.info("listed %d objects (%d streams, %d list calls%s): %d JSON, %d new, %d known, "
                "%d without district", c.listed, c.streams, c.list_calls,
                ", full listing" if c.full_listing else "", c.json, c.new, c.known,
                c.no_district)
    return c.as_dict()


@task(name="check-storage", **RETRIED_ONCE, **LIVE)
def check_storage(*blocks: str) -> None:
    """Fail with one line naming the block if its bucket is missing or refuses us, before
    any key is claimed (a missing bucket is a setting to fix, not a bad object)."""
    for name in dict.fromkeys(blocks):
        runtime.storage(name).check_exists(name)


@task(name="ended-claimers", **RETRIED, **LIVE)
def ended_claimers(metadata_db: str) -> list[str]:
    """The runs holding claimed keys that Prefect knows are over (failed, crashed,
    cancelled, even completed): their keys are taken at once rather than after the
    claim TTL. A run that failed while the metadata database was away could not give
    its keys back (its release hook failed too); its claim would otherwise wait out
    ``claim_ttl_minutes``.

    Args:
        metadata_db: SqlAlchemyConnector block holding ``s3_object``.
    """
    engine = runtime.engine(metadata_db)
    check_connection(engine, metadata_db)
    with engine.connect() as conn:
        holders = claiming_runs(conn, runtime.tables(), utcnow())
    ended = runtime.ended_runs(holders)
    if ended:
        get_run_logger().warning("%d ended runs still hold claimed keys, taken over now: %s",
                                 len(ended), ", ".join(ended))
    return ended


@task(name="get-keys", **RETRIED, **LIVE)
def get_keys(metadata_db: str, district: str, limit: int, run_id: str,
             claim_ttl_minutes: int, ended: list[str] | None = None) -> list[ClaimedKey]:
    """Claim up to ``limit`` PENDING (or stale) keys of ``district`` for this run, atomically.

    Args:
        metadata_db: SqlAlchemyConnector block holding ``s3_object``.
        district: district whose keys to claim.
        limit: most keys to claim.
        run_id: this flow run's id, written on every claimed key.
        claim_ttl_minutes: claims older than this are taken over.
        ended: runs known to be over (``ended-claimers``): their claims are taken too.
    """
    engine = runtime.engine(metadata_db)
    check_connection(engine, metadata_db)
    claimed = claim_keys(engine, runtime.tables(), district, limit, run_id,
                         timedelta(minutes=claim_ttl_minutes), ended=ended or ())
    (pause_hook_from_env() or no_hook)("after_claim")  # fault injection; normally nothing
    stale = sorted({c.previous_run_id for c in claimed
                    if c.previous_run_id and c.previous_run_id != run_id})
    get_run_logger().info("claimed %d keys of %s%s", len(claimed), district,
                          f" (taken over from {len(stale)} unfinished runs)" if stale else "")
    return claimed


@task(name="compact", **RETRIED_ONCE, **LIVE)
def compact(raw_logs: str, lake: str, target_prefix: str, district: str,
            tz_offset_hours: float, ram_limit: str, run_id: str,
            claimed: list[ClaimedKey], metadata_db: str | None = None) -> CompactResult:
    """DuckDB: the claimed JSON objects -> Parquet partitioned by hiveperiod and dstrct_code.

    Args:
        raw_logs: storage block (S3Bucket or LocalFileSystem) of the raw JSON.
        lake: storage block the Parquet goes to.
        target_prefix: folder inside the lake for the partitions.
        district: the claim's district: partition value of records without
            ``dstrct_code``, and the scope of the claim's file names.
        tz_offset_hours: offset of ``datetime_wita`` from UTC.
        ram_limit: DuckDB memory limit.
        run_id: the claim token; output file names derive from it.
        claimed: the keys claimed by ``get_keys``.
        metadata_db: SqlAlchemyConnector block of the registry; given, the claim is
            fenced (still this run's, renewed) immediately before publishing.
    """
    spec = CompactionSpec(runtime.storage(raw_logs), runtime.storage(lake), target_prefix, district,
                          tz_offset_hours, ram_limit)
    layout = ClaimLayout(spec.lake, target_prefix, run_id, district)
    # Fault injection (docs/s3_compaction.md): nothing is wired in unless the setting is on.
    hook = pause_hook_from_env() or no_hook
    check = no_fence
    if metadata_db is not None:
        engine = runtime.engine(metadata_db)

        def check() -> None:
            fence(engine, runtime.tables(), run_id, district, claimed)

    result = compact_claim(spec, layout, claimed, hook, check)
    logger = get_run_logger()
    for key, reason in result.quarantined.items():
        logger.warning("object %r quarantined: %s", key, reason)
    logger.info("%d rows in, %d rows out, %d Parquet files; %s", result.rows_in,
                result.rows_out, len(result.files),
                ", ".join(f"{k} {v:.2f} s" for k, v in result.seconds.items()))
    return result


@task(name="update-status", **RETRIED, **LIVE)
def update_status(metadata_db: str, lake: str, target_prefix: str, run_id: str,
                  result: CompactResult, district: str = "") -> int:
    """Mark written keys SUCCESS and malformed ones QUARANTINED; store bad records;
    register the records' fields as tags of the district (``tags``, upserted).

    Args:
        metadata_db: SqlAlchemyConnector block holding ``s3_object`` and ``quarantine``.
        lake: storage block the output went to (its manifest is dropped once keys are
            SUCCESS).
        target_prefix: folder inside the lake of the partitions.
        run_id: the claim token.
        result: what ``compact`` produced.
        district: the claim's district (its scope in the lake's file names).
    """
    engine, tables = runtime.engine(metadata_db), runtime.tables()
    tags = field_tags(result.fields, district) if result.succeeded else []
    if tags:
        ensure_tag_tables(engine, tables)
    with write_transaction(engine) as conn:
        _, bad = record_outcome(conn, tables, run_id, result.succeeded,
                                result.quarantined, result.bad_records, result.counts)
        register_tags(conn, tables.tags, tags)
    (pause_hook_from_env() or no_hook)("after_record")  # fault injection; normally nothing
    # Dropping the manifest makes the claim's files visible to readers (lake protocol).
    output.forget_manifest(ClaimLayout(runtime.storage(lake), target_prefix, run_id, district))
    get_run_logger().info("%d keys SUCCESS, %d QUARANTINED, %d bad records quarantined",
                          len(result.succeeded), len(result.quarantined), bad)
    return bad


@task(name="recover-leftovers", **RETRIED, **LIVE)
def recover_leftovers(lake: str, target_prefix: str, metadata_db: str, run_id: str,
                      claim_ttl_minutes: int, ended: list[str] | None = None) -> Recovery:
    """Before claiming: clean what dead claims left under the target (files, staging,
    manifest), drop the manifests of claims that finished, leave live ones alone
    (``shopfloor.compaction.recovery``). Whatever chain of crashes left them.

    Args:
        lake: storage block the Parquet goes to.
        target_prefix: folder inside the lake of the partitions.
        metadata_db: SqlAlchemyConnector block holding ``s3_object`` (who holds what).
        run_id: this run's claim token (never touched).
        claim_ttl_minutes: a claim not renewed for this long counts as dead.
        ended: runs known to be over: their claims count as dead whatever their age.
    """
    (pause_hook_from_env() or no_hook)("started")  # fault injection; normally nothing
    engine = runtime.engine(metadata_db)
    tables = runtime.tables()
    cutoff = utcnow() - timedelta(minutes=claim_ttl_minutes)

    def judge(claims):
        with engine.connect() as conn:
            return holdings(conn, tables, claims, cutoff, ended or ())

    done = recover(runtime.storage(lake), target_prefix, judge, keep=[run_id])
    if done.cleaned or done.forgotten or done.left:
        get_run_logger().warning(
            "leftovers of earlier claims under %s: cleaned %d dead (%d files: %s), dropped "
            "%d finished manifests, left %d live", target_prefix, len(done.cleaned),
            done.files_cleaned, ", ".join(done.cleaned) or "-", len(done.forgotten),
            len(done.left))
    return done


def release_run_claims(metadata_db: str, run_id: str, error: str) -> int:
    """Give every key ``run_id`` still holds back (PENDING; FAILED after too many
    attempts). Plain function: flow state hooks call it outside any task."""
    with write_transaction(runtime.engine(metadata_db)) as conn:
        return release_claim(conn, runtime.tables(), run_id, error)


@task(name="release-keys", **LIVE)
def release_keys(metadata_db: str, run_id: str, error: str) -> int:
    """Give this run's unfinished keys back to PENDING (FAILED after too many attempts).

    Args:
        metadata_db: SqlAlchemyConnector block holding ``s3_object``.
        run_id: the claim token.
        error: why the run gave up, stored on the keys.
    """
    n = release_run_claims(metadata_db, run_id, error)
    get_run_logger().warning("released %d keys: %s", n, error)
    return n


@task(name="claimable-districts", **RETRIED, **LIVE)
def claimable_districts_task(metadata_db: str, claim_ttl_minutes: int,
                             ended: list[str] | None = None) -> list[str]:
    """Districts with PENDING (or stale CLAIMED) keys, the oldest backlog first.

    Args:
        metadata_db: SqlAlchemyConnector block holding ``s3_object``.
        claim_ttl_minutes: claims older than this count as waiting.
        ended: runs known to be over: their claims count as waiting too.
    """
    engine = runtime.engine(metadata_db)
    check_connection(engine, metadata_db)
    cutoff = utcnow() - timedelta(minutes=claim_ttl_minutes)
    with engine.connect() as conn:
        return claimable_districts(conn, runtime.tables(), cutoff, ended or ())


@contextmanager
def claim_renewal(metadata_db: str, run_id: str, claim_ttl_minutes: int
                  ) -> Iterator[ClaimRenewal]:
    """Renew ``run_id``'s claims every TTL/3 in a background thread while the block runs
    (nothing for a TTL of 0). A failed renewal is logged and tried again."""
    engine = runtime.engine(metadata_db)
    tables = runtime.tables()
    logger = get_run_logger()

    def renew() -> int:
        with write_transaction(engine) as conn:
            return renew_claim(conn, tables, run_id)

    def report(exc: Exception) -> None:
        logger.warning("claim renewal failed (retried next interval): %s",
                       first_line(exc))

    with ClaimRenewal(renew, renewal_interval(claim_ttl_minutes * 60), report) as r:
        yield r
