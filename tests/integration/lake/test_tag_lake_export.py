"""The warehouse's tag samples exported to the lake (docs/tags.md, "The lake in long
format"): every (tag_id, ts) exactly once across runs with new, late and replayed samples,
and after a failure at each step of the publish, on SQLite and PostgreSQL, a local folder
and moto S3."""

import random
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from shopfloor.db.engine import init_db, make_engine
from shopfloor.db.schema import Tables
from shopfloor.db.upsert import upsert
from shopfloor.lake import protocol
from shopfloor.storage import StorageLocation
from shopfloor.tags import lake_export
from shopfloor.tags.lake_export import DEFAULT_LAG, export, watermark_name
from tests.pg import throwaway_database

PREFIX = "tag_samples"
T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)  # first run's samples; month 2026-03


class Boom(RuntimeError):
    """The injected failure (the process 'dies' here)."""


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse(request) -> Iterator[tuple[Engine, Tables]]:
    """A fresh warehouse per test (the watermark must start unset)."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = request.getfixturevalue("sqlite_url")
        else:
            url = stack.enter_context(
                throwaway_database(request.getfixturevalue("pg_server_url")))
        engine = make_engine(url)
        stack.callback(engine.dispose)
        yield engine, init_db(engine)


def write(engine: Engine, tables: Tables, rows: list[dict[str, Any]]) -> None:
    """Upsert samples on (tag_id, ts), as capture and the forwarder do."""
    with engine.begin() as conn:
        upsert(conn, tables.tag_samples, rows, ["tag_id", "ts"])


def samples(tags: list[int], start: datetime, n: int, ingested: datetime,
            seed: int) -> list[dict[str, Any]]:
    """``n`` samples 5 s apart from ``start`` for each tag, of every kind of point."""
    rnd = random.Random(seed)
    out = []
    for tag in tags:
        for i in range(n):
            kind = rnd.random()
            out.append({
                "tag_id": tag, "ts": start + timedelta(seconds=5 * i),
                "value": None if kind < 0.1 else round(rnd.uniform(-50, 50), 3),
                "text_value": f"s{seed}-{i}" if kind < 0.1 else None,
                "quality": 0 if kind > 0.9 else 192,
                "reason": "out of range [0, 10]" if kind > 0.9 else None,
                "ingested_at": ingested})
    return out


def key_of(row: dict[str, Any]) -> tuple[int, datetime]:
    return int(row["tag_id"]), row["ts"].astimezone(UTC)


def lake_rows(lake: StorageLocation) -> list[dict[str, Any]]:
    """What a protocol reader sees (hive columns left out: they are in the files)."""
    cols = ", ".join(f'"{c}"' for c in lake_export.COLUMNS)
    return protocol.read_lake(lake, PREFIX, cols).to_pylist()


def warehouse_rows(engine: Engine, tables: Tables, upto: datetime) -> dict[tuple, dict]:
    t = tables.tag_samples
    with engine.connect() as conn:
        rows = conn.execute(select(*(t.c[c] for c in lake_export.COLUMNS))
                            .where(t.c.ingested_at <= upto)).mappings().all()
    return {key_of(r): dict(r) for r in rows}


def assert_exactly_once(lake: StorageLocation, engine: Engine, tables: Tables,
                        upto: datetime) -> None:
    """Every sample ingested up to ``upto`` is in the lake once, as the warehouse has it
    now (the newest version of a replayed one), and nothing else is."""
    got = lake_rows(lake)
    keys = [key_of(r) for r in got]
    assert len(keys) == len(set(keys)), "a sample is in the lake twice"
    want = warehouse_rows(engine, tables, upto)
    assert set(keys) == set(want)
    for row in got:
        w = want[key_of(row)]
        for col in ("value", "text_value", "quality", "reason"):
            assert row[col] == w[col], (key_of(row), col)
        assert row["ingested_at"].astimezone(UTC) == w["ingested_at"].astimezone(UTC)


def run(engine: Engine, tables: Tables, lake: StorageLocation, now: datetime,
        token: str, fault: Callable[[str], None] = lake_export.no_fault
        ) -> lake_export.ExportStats:
    return export(engine, tables, lake, PREFIX, now, token, fault=fault)


def test_every_sample_once_across_runs_with_late_and_replayed_samples(warehouse, lake):
    engine, tables = warehouse
    tags = [1, 2, 7]
    # Run 1: two hours of samples of three tags.
    write(engine, tables, samples(tags, T0, 720, T0 + timedelta(hours=2), seed=1))
    now1 = T0 + timedelta(hours=3)
    s1 = run(engine, tables, lake, now1, "run1")
    assert (s1.samples, s1.tags, s1.partitions, s1.appended, s1.upserted) == (2160, 3, 3, 3, 0)
    assert_exactly_once(lake, engine, tables, now1 - DEFAULT_LAG)

    # Run 2: the next hour (appended), a late sample of an old month (February:
    # a new partition), a replay of run 1's samples of tag 2 with other values
    # (upserted), and a sample ingested inside the safety lag (left for run 3).
    write(engine, tables, samples(tags, T0 + timedelta(hours=2), 720,
                                  T0 + timedelta(hours=3, minutes=30), seed=2))
    write(engine, tables, samples([1], datetime(2026, 2, 10, tzinfo=UTC), 3,
                                  T0 + timedelta(hours=3, minutes=40), seed=3))
    write(engine, tables, samples([2], T0 + timedelta(minutes=30), 50,
                                  T0 + timedelta(hours=3, minutes=45), seed=4))
    now2 = T0 + timedelta(hours=4)
    write(engine, tables, samples([7], T0 + timedelta(hours=3), 2,
                                  now2 - timedelta(minutes=1), seed=5))
    s2 = run(engine, tables, lake, now2, "run2")
    assert s2.samples == 2160 + 3 + 50
    assert (s2.appended, s2.upserted) == (3, 1)  # tag 2's March is upserted (its replay)
    assert {p["partition"] for p in s2.touched} >= {f"{PREFIX}/tag_id=1/month=2026-02"}
    assert_exactly_once(lake, engine, tables, now2 - DEFAULT_LAG)

    # Run 3: the sample that was in flight, and a replay of a sample exported in run 2.
    write(engine, tables, samples([1], datetime(2026, 2, 10, tzinfo=UTC), 1,
                                  now2 + timedelta(minutes=10), seed=6))
    now3 = T0 + timedelta(hours=5)
    s3 = run(engine, tables, lake, now3, "run3")
    assert s3.samples == 2 + 1
    assert_exactly_once(lake, engine, tables, now3 - DEFAULT_LAG)

    # Run 4: nothing new; nothing written, the watermark still moves.
    s4 = run(engine, tables, lake, now3 + timedelta(hours=1), "run4")
    assert (s4.samples, s4.files) == (0, 0)
    assert_exactly_once(lake, engine, tables, now3 + timedelta(hours=1) - DEFAULT_LAG)
    # One tag's month is one folder: every partition is tag_id=<id>/month=<YYYY-MM>.
    parts = {o.key.rsplit("/", 1)[0] for o in protocol.visible_files(lake, PREFIX)}
    assert parts == {f"{PREFIX}/tag_id={t}/month=2026-03" for t in tags} | {
        f"{PREFIX}/tag_id=1/month=2026-02"}
    assert not list(lake.list_objects(f"_extraction/{PREFIX}"))


@pytest.mark.parametrize("step", ["after_stage", "mid_publish", "after_publish",
                                  "after_commit", "before_watermark"])
def test_a_failure_at_any_step_then_runs_leave_every_sample_once(warehouse, lake, step):
    """The run dies at ``step`` (twice in a row), readers see every sample at most once
    meanwhile, and the next run leaves every sample exactly once."""
    engine, tables = warehouse
    write(engine, tables, samples([3, 4], T0, 100, T0 + timedelta(minutes=10), seed=7))
    now1 = T0 + timedelta(hours=1)
    run(engine, tables, lake, now1, "first")
    # New samples and a replay, then two runs that die at the same step.
    write(engine, tables, samples([3, 4], T0 + timedelta(minutes=30), 100,
                                  now1 + timedelta(minutes=10), seed=8))
    write(engine, tables, samples([3], T0, 10, now1 + timedelta(minutes=20), seed=9))
    now2 = now1 + timedelta(hours=1)

    def die(at: str) -> None:
        if at == step:
            raise Boom(at)

    for attempt in ("dead1", "dead2"):
        with pytest.raises(Boom):
            run(engine, tables, lake, now2, attempt, fault=die)
        got = [key_of(r) for r in lake_rows(lake)]
        assert len(got) == len(set(got)), f"a reader sees a sample twice after {step}"
        # Readers see the old export or the new one, whole: nothing exported is lost.
        assert set(got) >= set(warehouse_rows(engine, tables, now1 - DEFAULT_LAG))
    with engine.connect() as conn:
        from shopfloor.db.watermark import get_watermark
        assert get_watermark(conn, tables, watermark_name(PREFIX)) == (
            now1 - DEFAULT_LAG).isoformat()
    stats = run(engine, tables, lake, now2, "recover")
    if step in ("mid_publish", "after_publish", "after_commit"):
        assert stats.recovered == 1  # the last dead run's manifest, rolled forward
    assert_exactly_once(lake, engine, tables, now2 - DEFAULT_LAG)
    assert not list(lake.list_objects(f"_extraction/{PREFIX}"))


def test_the_lake_maintenance_merges_a_closed_month_and_exports_go_on(warehouse, lake):
    """Hourly exports leave a file per run in a month; after the month closes the merge
    makes one file of them (sorted by (tag_id, ts)), readers still see every sample once,
    and a later replay into the merged month is upserted over the merged file."""
    import uuid
    from datetime import date

    from shopfloor.lake.merge import MergeSpec, maintain

    engine, tables = warehouse
    now = T0
    for hour in range(4):  # four runs: four files in tag 9's March
        write(engine, tables, samples([9], T0 + timedelta(hours=hour), 100,
                                      T0 + timedelta(hours=hour, minutes=59), seed=20 + hour))
        now = T0 + timedelta(hours=hour + 1, minutes=10)
        run(engine, tables, lake, now, f"h{hour}")
    part = f"{PREFIX}/tag_id=9/month=2026-03"
    assert len(protocol.visible_files(lake, part)) == 4
    spec = MergeSpec(lake, PREFIX, engine, tables, target_bytes=64 * 2**20)
    # Still open on April 2nd with 3 days' grace; closed on April 4th.
    assert maintain(spec, date(2026, 4, 2), 3, lambda: uuid.uuid4().hex) == []
    [merged] = maintain(spec, date(2026, 4, 4), 3, lambda: uuid.uuid4().hex)
    assert (merged.status, merged.files_in, merged.files_out, merged.rows) == (
        "merged", 4, 1, 400)
    assert_exactly_once(lake, engine, tables, now - DEFAULT_LAG)
    ts = [r["ts"] for r in lake_rows(lake)]
    assert ts == sorted(ts)
    # A replay of samples in the merged file: upserted (the merged file's range is read
    # from its footer), still once each.
    write(engine, tables, samples([9], T0 + timedelta(hours=1), 20,
                                  now + timedelta(minutes=1), seed=30))
    later = now + timedelta(hours=1)
    stats = run(engine, tables, lake, later, "replay")
    assert (stats.samples, stats.upserted) == (20, 1)
    assert_exactly_once(lake, engine, tables, later - DEFAULT_LAG)
    assert len(protocol.visible_files(lake, part)) == 1


def test_a_merge_between_the_read_and_the_publish_of_an_upsert_publishes_nothing(
        warehouse, lake):
    """The maintenance merges a closed month after the export read it for an upsert and
    before it published (injected at ``after_stage``): the export publishes nothing,
    readers see every sample once, and the next run upserts over the merged file."""
    import uuid
    from datetime import date

    from shopfloor.lake.merge import MergeSpec, maintain
    from shopfloor.tags.lake_export import PartitionChanged

    engine, tables = warehouse
    now = T0
    for hour in range(3):
        write(engine, tables, samples([4], T0 + timedelta(hours=hour), 50,
                                      T0 + timedelta(hours=hour, minutes=59), seed=40 + hour))
        now = T0 + timedelta(hours=hour + 1, minutes=10)
        run(engine, tables, lake, now, f"h{hour}")
    write(engine, tables, samples([4], T0, 10, now + timedelta(minutes=1), seed=50))  # replay
    spec = MergeSpec(lake, PREFIX, engine, tables, target_bytes=64 * 2**20)

    def merge_now(step: str) -> None:
        if step == "after_stage":
            [res] = maintain(spec, date(2026, 4, 10), 3, lambda: uuid.uuid4().hex)
            assert res.status == "merged"

    later = now + timedelta(hours=1)
    with pytest.raises(PartitionChanged):
        run(engine, tables, lake, later, "raced", fault=merge_now)
    # The merged month, each sample once (the replayed ones at their exported version).
    keys = [key_of(r) for r in lake_rows(lake)]
    assert len(keys) == len(set(keys)) == 150
    assert set(keys) == set(warehouse_rows(engine, tables, later))
    assert not list(lake.list_objects(f"_extraction/{PREFIX}"))
    stats = run(engine, tables, lake, later, "again")
    assert (stats.samples, stats.upserted) == (10, 1)
    assert_exactly_once(lake, engine, tables, later - DEFAULT_LAG)


def test_readings_migrated_after_an_export_are_exported_by_the_next_run(warehouse, lake):
    """``shopfloor db init --upgrade`` copies ``temperature_raw`` into ``tag_samples``.
    When the export had run before (deployed first, or a migration resumed after a crash
    while the hourly export went on), the copies carried the readings' old
    ``ingested_at``, behind the export's watermark: no later run ever exported them."""
    from shopfloor.tags.migrate import migrate_raw

    engine, tables = warehouse
    old = T0 + timedelta(minutes=10)
    with engine.begin() as conn:
        upsert(conn, tables.temperature_raw, [
            {"loc_id": "MIG1", "capture_dt": T0 + timedelta(minutes=m),
             "temperature": 20.0 + m, "humidity": 50.0, "pcv_temperature": None,
             "device": "old-plc", "ingested_at": old} for m in range(6)],
            ["loc_id", "capture_dt"])
    assert run(engine, tables, lake, T0 + timedelta(hours=2), "before").samples == 0
    report = migrate_raw(engine, tables)
    assert sum(report.samples.values()) == 18
    now = datetime.now(UTC) + DEFAULT_LAG + timedelta(minutes=1)
    stats = run(engine, tables, lake, now, "after")
    assert stats.samples == 18
    assert_exactly_once(lake, engine, tables, now - DEFAULT_LAG)
