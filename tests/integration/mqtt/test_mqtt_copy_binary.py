"""The collector's binary COPY of tag points on real PostgreSQL: every kind of point
(good rows, numbers judged bad or uncertain with their reasons, text values with
quotes, commas and non-ASCII, a point without a value) lands exactly, at its time, as
the portable upsert writes it; a repeat of stored keys goes through the staged path."""

from datetime import UTC, datetime

from sqlalchemy import Engine, select

from shopfloor.db.schema import get_tables
from shopfloor.modbus.tag_points import ensure_tag_tables
from shopfloor.mqtt.points import PointBatch, TagPoint, copies, write_tag_points
from shopfloor.tags.quality import BAD, UNCERTAIN
from shopfloor.tags.registry import TagInfo, register_tags
from tests.integration.mqtt.conftest import unique

T0 = 1_790_000_000_123  # ms
NOW = datetime(2026, 12, 7, 7, 30, 15, 654321, tzinfo=UTC)


def _tags(device: str, n: int) -> list[TagInfo]:
    return [TagInfo(f"t{k}", device, None, None, "float", None, None) for k in range(n)]


def _batch(tags: list[TagInfo], text: TagInfo, t0: int) -> PointBatch:
    batch = PointBatch()
    for m in range(30):  # 30 messages of 20 good numbers: rows
        batch.add_row(tags, t0 + m * 1000, [m + k / 3 for k in range(len(tags))])
    batch.add_message([
        TagPoint(text, t0 + 40_000, text='say "hi", then 25 °C'),
        TagPoint(tags[0], t0 + 40_000, 1e12, None, BAD, "out of range [0, 100]"),
        TagPoint(tags[1], t0 + 40_000, None, None, BAD, "not a number"),
        TagPoint(tags[2], t0 + 40_000, -0.1, None, UNCERTAIN, "sensor warming up"),
    ], [text, *tags[:3]])
    return batch


def _stored(engine: Engine, ids: dict) -> set[tuple]:
    s = get_tables().tag_samples
    names = {v: k[1] for k, v in ids.items()}
    with engine.connect() as conn:
        rows = conn.execute(select(s).where(s.c.tag_id.in_(list(ids.values())))).mappings()
        return {(names[r["tag_id"]], int(r["ts"].timestamp() * 1000), r["value"],
                 r["text_value"], r["quality"], r["reason"], r["ingested_at"]) for r in rows}


def test_every_kind_of_point_lands_exactly_through_the_binary_copy(mqtt_db: Engine):
    tables = get_tables()
    ensure_tag_tables(mqtt_db, tables)
    device = unique("binary")
    tags, text = _tags(device, 20), TagInfo("state", device, None, None, "string", None,
                                            None)
    with mqtt_db.begin() as conn:
        ids = register_tags(conn, tables.tags, [*tags, text])
    id_of = {id(t): ids[(t.device, t.name)] for t in [*tags, text]}
    batch = _batch(tags, text, T0)
    assert copies(mqtt_db, batch) and len(batch) == 604
    with mqtt_db.begin() as conn:
        written = write_tag_points(conn, tables.tag_samples, batch, id_of, NOW)
    assert (written.points, written.bad, written.uncertain) == (604, 2, 1)
    got = _stored(mqtt_db, ids)
    expected = {(f"t{k}", T0 + m * 1000, m + k / 3, None, 192, None, NOW)
                for m in range(30) for k in range(20)}
    expected |= {("state", T0 + 40_000, None, 'say "hi", then 25 °C', 192, None, NOW),
                 ("t0", T0 + 40_000, 1e12, None, BAD, "out of range [0, 100]", NOW),
                 ("t1", T0 + 40_000, None, None, BAD, "not a number", NOW),
                 ("t2", T0 + 40_000, -0.1, None, UNCERTAIN, "sensor warming up", NOW)}
    assert got == expected

    # The same keys again (a redelivered batch), other values: the staged upsert
    # overwrites, nothing twice.
    again = PointBatch()
    for m in range(30):
        again.add_row(tags, T0 + m * 1000, [-1.0] * 20)
    with mqtt_db.begin() as conn:
        write_tag_points(conn, tables.tag_samples, again, id_of, NOW)
    after = _stored(mqtt_db, ids)
    assert len(after) == len(got)
    assert {r[2] for r in after if r[0].startswith("t") and r[1] < T0 + 30_000} == {-1.0}
