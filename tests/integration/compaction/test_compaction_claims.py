"""Claims against real databases: disjoint concurrent claims, stale take-over, outcomes."""

import threading
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select, text, update

from shopfloor.compaction.claims import claim_keys, finish_claim, release_claim
from shopfloor.compaction.keys import register_keys, registry_rows
from shopfloor.db.engine import init_db, make_engine, write_transaction
from shopfloor.db.schema import Tables
from shopfloor.db.types import utcnow
from shopfloor.storage import ObjectInfo

from .helpers import statuses

TTL = timedelta(minutes=60)


def _register(engine: Engine, tables: Tables, n: int, distrik: str = "BRCB") -> list[str]:
    keys = [f"dev/2025112000/obj{i:03d}.json" for i in range(n)]
    rows, _ = registry_rows([ObjectInfo(k, 10) for k in keys], distrik, utcnow())
    with engine.begin() as conn:
        register_keys(conn, tables, rows)
    return keys


def test_registering_twice_adds_nothing_and_keeps_status(pg_engine, registry):
    _register(pg_engine, registry, 5)
    claim_keys(pg_engine, registry, "BRCB", 2, "run-a", TTL)
    rows, _ = registry_rows([ObjectInfo(f"dev/2025112000/obj{i:03d}.json", 10)
                             for i in range(7)], "BRCB", utcnow())
    with pg_engine.begin() as conn:
        assert register_keys(conn, registry, rows) == 2
    assert sorted(statuses(pg_engine, registry).values()) == ["CLAIMED"] * 2 + ["PENDING"] * 5


def test_concurrent_claims_on_postgresql_get_disjoint_keys_without_waiting(pg_engine, registry):
    keys = _register(pg_engine, registry, 10)
    t = registry.s3_object
    with pg_engine.connect() as holder:
        # An open transaction holding row locks on 4 keys, as a claimer mid-claim does.
        holder.execute(text("SET LOCAL lock_timeout = '5s'"))
        locked = holder.execute(
            select(t.c.key).order_by(t.c.id).limit(4).with_for_update()).scalars().all()
        other = claim_keys(pg_engine, registry, "BRCB", 10, "run-b", TTL)
        holder.rollback()
    assert sorted(c.key for c in other) == sorted(set(keys) - set(locked))


def test_two_claimers_split_all_keys_exactly_once(pg_engine, registry):
    keys = _register(pg_engine, registry, 12)
    a = claim_keys(pg_engine, registry, "BRCB", 5, "run-a", TTL)
    b = claim_keys(pg_engine, registry, "BRCB", 5, "run-b", TTL)
    c = claim_keys(pg_engine, registry, "BRCB", 5, "run-c", TTL)
    claimed = [k.key for k in a + b + c]
    assert sorted(claimed) == sorted(keys)
    assert (len(a), len(b), len(c)) == (5, 5, 2)


def test_only_the_requested_distrik_is_claimed(pg_engine, registry):
    _register(pg_engine, registry, 3, "BRCB")
    rows, _ = registry_rows([ObjectInfo("x/other.json", 1)], "SATU", utcnow())
    with pg_engine.begin() as conn:
        register_keys(conn, registry, rows)
    assert [c.key for c in claim_keys(pg_engine, registry, "SATU", 10, "r", TTL)] == [
        "x/other.json"]


def test_a_stale_claim_is_taken_over_with_its_run_id(pg_engine, registry):
    _register(pg_engine, registry, 3)
    long_ago = utcnow() - timedelta(hours=2)
    first = claim_keys(pg_engine, registry, "BRCB", 3, "run-old", TTL, now=long_ago)
    assert len(first) == 3
    fresh = claim_keys(pg_engine, registry, "BRCB", 3, "run-fresh", TTL)
    assert fresh == [] or all(c.previous_run_id == "run-old" for c in fresh)
    assert {c.previous_run_id for c in fresh} == {"run-old"}
    # A fresh claim is not taken over.
    assert claim_keys(pg_engine, registry, "BRCB", 3, "run-third", TTL) == []


def test_a_retried_claim_returns_the_runs_own_keys(pg_engine, registry):
    _register(pg_engine, registry, 4)
    first = claim_keys(pg_engine, registry, "BRCB", 2, "run-a", TTL)
    again = claim_keys(pg_engine, registry, "BRCB", 2, "run-a", TTL)
    assert [c.key for c in again] == [c.key for c in first]


def test_outcome_only_touches_keys_still_claimed_by_the_run(pg_engine, registry):
    keys = _register(pg_engine, registry, 3)
    claim_keys(pg_engine, registry, "BRCB", 3, "run-a", TTL)
    with pg_engine.begin() as conn:
        assert finish_claim(conn, registry, "run-other", keys, {}) == 0
        assert finish_claim(conn, registry, "run-a", keys[:1], {keys[1]: "bad json"}) == 2
        assert release_claim(conn, registry, "run-a", "boom") == 1
    assert statuses(pg_engine, registry) == {
        keys[0]: "SUCCESS", keys[1]: "QUARANTINED", keys[2]: "PENDING"}
    again = claim_keys(pg_engine, registry, "BRCB", 3, "run-b", TTL)
    assert [(c.key, c.previous_run_id) for c in again] == [(keys[2], "run-a")]


def test_sqlite_claims_under_its_write_lock(sqlite_url):
    engine = make_engine(sqlite_url)
    tables = init_db(engine)
    keys = _register(engine, tables, 6)
    a = claim_keys(engine, tables, "BRCB", 4, "run-a", TTL)
    b = claim_keys(engine, tables, "BRCB", 4, "run-b", TTL)
    assert sorted(c.key for c in a + b) == keys
    assert len(b) == 2
    engine.dispose()


@pytest.mark.mariadb
def test_mariadb_claims_skip_locked_rows(mariadb_url):
    engine = make_engine(mariadb_url)
    tables = init_db(engine)
    keys = _register(engine, tables, 6)
    t = tables.s3_object
    with engine.connect() as holder:
        locked = holder.execute(
            select(t.c.key).order_by(t.c.id).limit(2).with_for_update()).scalars().all()
        other = claim_keys(engine, tables, "BRCB", 10, "run-b", TTL)
        holder.rollback()
    assert sorted(c.key for c in other) == sorted(set(keys) - set(locked))
    engine.dispose()


def test_finishing_more_keys_than_one_statement_takes_marks_them_all(pg_engine, registry,
                                                                    monkeypatch):
    """Succeeded keys go in chunks (SQL Server's 2,100-parameter cap): all are marked."""
    import shopfloor.compaction.claims as claims

    monkeypatch.setattr(claims, "FINISH_CHUNK", 3)
    keys = _register(pg_engine, registry, 8)
    claim_keys(pg_engine, registry, "BRCB", 8, "run-a", TTL)
    with pg_engine.begin() as conn:
        assert finish_claim(conn, registry, "run-a", keys, {}) == 8
    assert set(statuses(pg_engine, registry).values()) == {"SUCCESS"}


def test_a_sqlite_claimer_waits_at_begin_for_one_mid_claim_then_takes_the_rest(sqlite_url):
    first, second = make_engine(sqlite_url), make_engine(sqlite_url)
    tables = init_db(first)
    keys = _register(first, tables, 6)
    t = tables.s3_object
    got: list = []
    with write_transaction(first) as conn:  # a claimer that has marked 4 keys, not committed
        conn.execute(update(t).where(t.c.key.in_(keys[:4]))
                     .values(compression_status="CLAIMED", compression_run_id="run-a",
                             claimed_at=utcnow()))
        other = threading.Thread(
            target=lambda: got.extend(claim_keys(second, tables, "BRCB", 10, "run-b", TTL)))
        other.start()
        other.join(0.3)
        assert other.is_alive() and got == []  # waiting for the lock, nothing read yet
    other.join(10)
    # It read after the first claim committed: the 2 keys left, none of run-a's.
    assert sorted(c.key for c in got) == keys[4:]
    first.dispose()
    second.dispose()


def test_a_fresh_claim_of_an_ended_run_is_waiting_dead_and_taken(pg_engine, registry):
    """Within the TTL a claim is its run's; once the caller knows that run ended, its
    district is waiting, its leftovers are dead, and a claimer takes its keys (the
    previous run id returned, to clean after it), and no one else's."""
    from shopfloor.compaction.claims import (
        DEAD,
        LIVE,
        claimable_districts,
        claiming_runs,
        holdings,
    )

    _register(pg_engine, registry, 4, "SATU")
    claim_keys(pg_engine, registry, "SATU", 2, "run-ended", TTL)
    claim_keys(pg_engine, registry, "SATU", 2, "run-live", TTL)
    cutoff = utcnow() - TTL
    with pg_engine.connect() as conn:
        assert {"run-ended", "run-live"} <= set(claiming_runs(conn, registry, utcnow()))
        assert "SATU" not in claimable_districts(conn, registry, cutoff)
        assert "SATU" in claimable_districts(conn, registry, cutoff, ["run-ended"])
        claims = [("run-ended", "SATU"), ("run-live", "SATU")]
        assert holdings(conn, registry, claims, cutoff) == {c: LIVE for c in claims}
        assert holdings(conn, registry, claims, cutoff, ["run-ended"]) == {
            ("run-ended", "SATU"): DEAD, ("run-live", "SATU"): LIVE}
    assert claim_keys(pg_engine, registry, "SATU", 10, "run-next", TTL) == []
    taken = claim_keys(pg_engine, registry, "SATU", 10, "run-next", TTL, ended=["run-ended"])
    assert [c.previous_run_id for c in taken] == ["run-ended"] * 2
    t = registry.s3_object
    with pg_engine.connect() as conn:
        holders = conn.execute(select(t.c.compression_run_id).where(
            t.c.distrik == "SATU", t.c.compression_status == "CLAIMED")).scalars().all()
    assert sorted(holders) == ["run-live", "run-live", "run-next", "run-next"]
