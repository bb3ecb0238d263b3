"""The compaction's tag registration with its metadata database stopped.

The registry's database (``s3_object``, ``tags``) is a private PostgreSQL cluster that
the test stops (``-m immediate``) between the compaction's Parquet staging and its
status update, the transaction that also registers the records' fields as tags. The
run fails; once the database is back, the next run takes the dead claim over. Checked:
nothing was marked or registered while it was down, and afterwards every key is
SUCCESS, every field is a tag once (one id, kept by later runs), every record is in the
lake once.

What the run does meanwhile (seen in its log): ``update-status`` is tried three times
5 s apart, then ``release-keys`` and the flow's release hook fail too (the database is
still away), so the keys stay CLAIMED by the dead run, and the run ends Failed. The
next run, on the default one-hour ``claim_ttl_minutes``, asks Prefect which claimers
are over (``ended-claimers``), finds that one Failed and takes its keys at once (before,
they waited out the TTL: this test stood for it with ``claim_ttl_minutes=0``).
"""

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL
from sqlalchemy import Engine, func, select

from blocks.bootstrap import connector_from_url
from flows.s3_compaction import register_s3_keys, s3_compaction
from shopfloor.compaction.faults import PAUSE_AT, PAUSE_FILE, RESUME_FILE
from shopfloor.compaction.tags import field_device
from shopfloor.db.engine import init_db, make_engine
from shopfloor.db.schema import Tables
from shopfloor.lake import protocol
from tests.pgcluster import PrivateCluster, private_cluster

from .helpers import lake_rows, ndjson, records, start_paused_child, statuses

REPO = Path(__file__).resolve().parents[3]
BLOCK = "cmp-meta-outage"
# The fields of helpers.records() that are tags (heartbeat is the time).
FIELDS = {"device", "obj", "seq", "temperature"}
pytestmark = [pytest.mark.outage, pytest.mark.timeout(600)]


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    with private_cluster() as c:
        yield c


@pytest.fixture
def meta(cluster: PrivateCluster, prefect_harness: None) -> Iterator[tuple[Engine, Tables]]:
    """The registry's tables on the private cluster, and the block naming them."""
    engine = make_engine(cluster.url)
    tables = init_db(engine)
    connector_from_url(cluster.url).save(BLOCK, overwrite=True)
    yield engine, tables
    engine.dispose()


def _tags(engine: Engine, tables: Tables) -> list[tuple[str, str, int]]:
    t = tables.tags
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            select(t.c.device, t.c.name, t.c.id).order_by(t.c.device, t.c.name)).all()]


def _paused_child(env: dict[str, str], marker: Path) -> subprocess.Popen:
    """A compaction run in its own process, stopped right after its Parquet is staged
    and published under its claim, before the status update (``after_compact``)."""
    code = ("from flows.s3_compaction import s3_compaction\n"
            "s3_compaction(raw_logs='cmp-raw-local', lake='cmp-lake-local', "
            f"metadata_db={BLOCK!r}, ram_limit='256MB')\n")
    return start_paused_child(code, env, marker)


def test_tags_with_the_metadata_database_stopped_are_registered_once_when_it_is_back(
        cluster, meta, local_blocks, write_objects, tmp_path):
    engine, tables = meta
    raw, lake = local_blocks
    write_objects(raw, {f"dstrct_code=D01/plc/20251120{i:02d}/run.json":
                        ndjson(records(i, 25)) for i in range(4)})
    register_s3_keys(raw_logs="cmp-raw-local", metadata_db=BLOCK)
    marker, resume = tmp_path / "paused", tmp_path / "resume"
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(),
           PAUSE_AT: "after_compact", PAUSE_FILE: str(marker), RESUME_FILE: str(resume)}
    child = _paused_child(env, marker)
    try:
        cluster.stop()
        resume.write_text("go")
        _, err = child.communicate(timeout=300)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    # The status update (and with it the tags) could not be written: the run fails.
    assert child.returncode != 0, err[-3000:]
    assert "Connection refused" in err or "could not connect" in err, err[-3000:]

    cluster.start()
    # Nothing was half done: the keys are still the dead run's, no tag was registered,
    # and no reader sees the dead claim's files.
    assert set(statuses(engine, tables).values()) == {"CLAIMED"}
    assert _tags(engine, tables) == []
    assert not [o.key for o in protocol.visible_files(lake, "datalog_v2")
                if o.key.endswith(".parquet")]

    # The next run, on the default TTL, takes the keys of the run Prefect saw fail.
    state = s3_compaction(raw_logs="cmp-raw-local", lake="cmp-lake-local",
                          metadata_db=BLOCK, ram_limit="256MB", return_state=True)
    assert state.is_completed(), state.message
    assert state.result()["keys_succeeded"] == 4
    assert set(statuses(engine, tables).values()) == {"SUCCESS"}
    tags = _tags(engine, tables)
    assert sorted((d, n) for d, n, _ in tags) == sorted(
        (field_device("D01"), f) for f in FIELDS)
    rows = lake_rows(lake)
    assert len(rows) == len({(r[0], r[1]) for r in rows}) == 4 * 25

    # Fields seen again by a later run keep their one entry and id.
    write_objects(raw, {"dstrct_code=D01/plc/2025112010/run.json": ndjson(records(10, 5))})
    register_s3_keys(raw_logs="cmp-raw-local", metadata_db=BLOCK)
    again = s3_compaction(raw_logs="cmp-raw-local", lake="cmp-lake-local",
                          metadata_db=BLOCK, ram_limit="256MB")
    assert again["keys_succeeded"] == 1
    assert _tags(engine, tables) == tags
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(tables.tags)).scalar_one() \
            == len(FIELDS)
