"""s3-compaction leaves one quality_score row per object, in the status transaction."""

from sqlalchemy import select

from flows.s3_compaction import register_s3_keys, s3_compaction

from .helpers import META, ndjson, records


def test_every_object_gets_its_quality_row(meta_block, local_blocks, write_objects, pg_engine,
                                           registry):
    raw, _ = local_blocks
    write_objects(raw, {
        "plc1/2025112000/good.json": ndjson(records(1, 10)),
        "plc1/2025112000/bad-records.json": ndjson(
            records(2, 3) + [{"heartbeat": "n/a", "seq": 99}]),
        "plc1/2025112000/empty.json": b"",
    })
    register_s3_keys(raw_logs="cmp-raw-local", distrik="BRCB", metadata_db=META)
    summary = s3_compaction(distrik="BRCB", raw_logs="cmp-raw-local", lake="cmp-lake-local",
                            metadata_db=META)
    q = registry.quality_score
    with pg_engine.connect() as conn:
        rows = {r["subject"].rsplit("/", 1)[-1]: dict(r)
                for r in conn.execute(select(q).where(q.c.flow == "s3-compaction")).mappings()}
    assert rows.keys() == {"good.json", "bad-records.json", "empty.json"}
    good, bad, empty = rows["good.json"], rows["bad-records.json"], rows["empty.json"]
    assert (good["rows_in"], good["rows_valid"], good["overall"]) == (10, 10, 1.0)
    assert (bad["rows_in"], bad["rows_valid"], bad["rows_quarantined"]) == (4, 3, 1)
    assert bad["validity"] == 0.75 and bad["completeness"] == 1.0
    assert (empty["rows_in"], empty["expected"], empty["completeness"]) == (0, 1, 0.0)
    assert {r["run_id"] for r in rows.values()} != {None}
    # the run's table shows the objects' scores taken together: 13 of 14 records valid
    assert summary["q_validity"] == round(13 / 14, 4)
