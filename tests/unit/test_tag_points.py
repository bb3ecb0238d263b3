"""Readings as tag points (shopfloor/modbus/tag_points.py) and the tag registry
(shopfloor/tags/registry.py): quality per point, CSV for COPY, renames keep the id."""

import math
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import create_engine

from shopfloor.db.schema import get_tables
from shopfloor.modbus.batch import batch_of
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.tag_points import source_name, tag_infos, tag_points
from shopfloor.modbus.tags import TagSpec
from shopfloor.tags.quality import BAD, GOOD, out_of_range, quality_name
from shopfloor.tags.registry import TagInfo, register_tags

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TAGS = (
    TagSpec(name="temp", column="temperature", address=0, data_type="float32",
            min_value=-20, max_value=80, unit="degC"),
    TagSpec(name="pressure", column="line_pressure", address=2, data_type="float32",
            min_value=0, max_value=10.5),
    TagSpec(name="recipe", column="recipe", address=10, data_type="string", length=2),
    TagSpec(name="running", column="running", register_type="input", address=20,
            data_type="bit", bit=3),
)
CFG = DeviceConfig(name="dev", loc_id="L1", tags=TAGS)
IDS = {"temp": 1, "pressure": 2, "recipe": 3, "running": 4}


def _batch(temps, pressures, recipes, missing):
    n = len(temps)
    return batch_of(CFG, [T0 + timedelta(seconds=k) for k in range(n)],
                    {"temperature": temps, "line_pressure": pressures, "recipe": recipes,
                     "running": [1.0] * n}, missing)


def _by_tag(points):
    out: dict[int, list] = {}
    for i, tag in enumerate(points.tag_id.tolist()):
        out.setdefault(tag, []).append((points.value[i], points.text[i],
                                        int(points.quality[i]), points.reason[i]))
    return out


def test_each_point_is_judged_on_its_own():
    batch = _batch([20.0, 21.0, math.nan], [99.0, 5.0, 5.0], ["AB", None, "CD"],
                   ["", "recipe", ""])
    got = _by_tag(tag_points(batch, IDS))
    assert [q for _, _, q, _ in got[1]] == [GOOD, GOOD, BAD]  # NaN: a decode error
    assert got[1][2][3] == "not a finite number" and math.isnan(got[1][2][0])
    assert got[2][0][2:] == (BAD, "out of range [0, 10.5]") and got[2][0][0] == 99.0
    assert [q for _, _, q, _ in got[2][1:]] == [GOOD, GOOD]
    assert [(t, q, r) for _, t, q, r in got[3]] == [("AB", GOOD, None),
                                                    (None, BAD, "read failed"),
                                                    ("CD", GOOD, None)]
    assert all(math.isnan(v) for v, *_ in got[3])
    assert [(v, q) for v, _, q, _ in got[4]] == [(1.0, GOOD)] * 3


def test_tags_without_an_id_are_left_out_and_a_repeated_time_keeps_the_last():
    batch = batch_of(CFG, [T0, T0], {"temperature": [1.0, 2.0], "line_pressure": [1.0, 1.0],
                                     "recipe": ["a", "b"], "running": [0.0, 1.0]}, ["", ""])
    points = tag_points(batch, {"temp": 7, "recipe": 9})
    assert sorted(zip(points.tag_id.tolist(), points.text, strict=True), key=str) == \
        [(7, None), (9, "b")]
    assert points.value[points.tag_id == 7].tolist() == [2.0]


def test_csv_is_what_copy_reads():
    batch = _batch([20.5, math.nan], [1.0, 1.0], ['a"b', None], ["", "recipe"])
    columns, csv = tag_points(batch, {"temp": 1, "recipe": 3}).csv(T0)
    assert columns == ["tag_id", "ts", "value", "text_value", "quality", "reason",
                       "ingested_at"]
    assert csv.splitlines() == [
        "1,2026-01-01T00:00:00.000,20.5,,192,,2026-01-01T00:00:00",
        '1,2026-01-01T00:00:01.000,,,0,"not a finite number",2026-01-01T00:00:00',
        '3,2026-01-01T00:00:00.000,,"a""b",192,,2026-01-01T00:00:00',
        '3,2026-01-01T00:00:01.000,,,0,"read failed",2026-01-01T00:00:00',
    ]
    rows = tag_points(batch, {"temp": 1}).rows(T0)
    assert rows[1] == {"tag_id": 1, "ts": T0 + timedelta(seconds=1), "value": None,
                       "text_value": None, "quality": BAD, "reason": "not a finite number",
                       "ingested_at": T0}


def test_the_registry_view_of_a_map():
    infos = {i.name: i for i in tag_infos(CFG)}
    assert infos["temp"] == TagInfo("temp", "dev", "L1", "degC", "float32", None, "holding:0")
    assert source_name(TAGS[3]) == "input:20.3"
    assert quality_name(GOOD) == "good" and quality_name(64) == "uncertain"
    assert out_of_range(-math.inf, 1.5) == "out of range [-inf, 1.5]"


def test_registering_is_idempotent_and_a_renamed_tag_keeps_its_id():
    engine = create_engine("sqlite://")
    table = get_tables().tags
    table.create(engine)
    with engine.begin() as conn:
        first = register_tags(conn, table, tag_infos(CFG))
    renamed = (TAGS[0].model_copy(update={"name": "air_temp"}), *TAGS[1:],
               TagSpec(name="new", column="new", address=30))
    with engine.begin() as conn:
        again = register_tags(conn, table, tag_infos(CFG))
        moved = register_tags(conn, table, tag_infos(DeviceConfig("dev", "L1", renamed)))
        count = conn.exec_driver_sql("SELECT count(*) FROM tags").scalar()
    assert again == first
    assert moved[("dev", "air_temp")] == first[("dev", "temp")]
    assert moved[("dev", "new")] not in first.values() and count == 5
    assert np.unique(list(moved.values())).size == 5


# -- stale values and samples nobody answered ------------------------------------------

STALE_TAGS = (TagSpec(name="temp", column="temperature", address=0, data_type="float32",
                      stale_after=2),
              TagSpec(name="pressure", column="line_pressure", address=2, data_type="float32"))
STALE_CFG = DeviceConfig(name="dev", loc_id="L1", tags=STALE_TAGS)


def _stale_batch(temps, start=0, missing=None):
    n = len(temps)
    return batch_of(STALE_CFG, [T0 + timedelta(seconds=start + k) for k in range(n)],
                    {"temperature": temps, "line_pressure": [1.0] * n},
                    missing or [""] * n)


def test_a_value_unchanged_for_stale_after_readings_is_uncertain_across_batches():
    from shopfloor.modbus.tag_points import StaleRuns
    from shopfloor.tags.quality import STALE, UNCERTAIN

    ids = {"temp": 1, "pressure": 2}
    runs = StaleRuns()
    batch = _stale_batch([5.0, 5.0, 5.0, 5.0, 6.0])
    first = _by_tag(tag_points(batch, ids, runs))
    # unchanged for 2 readings: the third equal reading and those after it
    assert [(q, r) for *_, q, r in first[1]] == [(GOOD, None)] * 2 + [(UNCERTAIN, STALE)] * 2 \
        + [(GOOD, None)]
    assert all(v == 5.0 for v, *_ in first[1][:4])  # the value is kept
    assert {q for *_, q, _ in first[2]} == {GOOD}  # no stale_after: never stale
    # the write failed and is retried: the same verdicts, the runs moved once
    assert _by_tag(tag_points(batch, ids, runs)) == first
    assert runs.runs == {} and runs.pending == {"temp": (6.0, 1)}
    runs.commit()
    later = tag_points(_stale_batch([6.0, 6.0, math.nan, 6.0], start=5), ids, runs)
    # 6.0 continues its run from the last batch; a sample without the value ends it
    assert [int(q) for q in later.quality[:4]] == [GOOD, UNCERTAIN, BAD, GOOD]


def test_a_sample_nobody_answered_is_a_bad_point_per_tag_and_no_reading():
    from shopfloor.modbus.planning import plan_requests
    from shopfloor.modbus.readings import RawSample, decode_batch
    from shopfloor.modbus.sink import judge
    from shopfloor.tags.quality import NO_ANSWER

    plan = plan_requests(list(STALE_TAGS), 125, 10, 2000)
    words = {0: [0x4120, 0, 0x3F80, 0]}  # 10.0 and 1.0 (float32, ABCD)
    samples = [RawSample(T0, words), RawSample(T0 + timedelta(seconds=1), {}),
               RawSample(T0 + timedelta(seconds=2), words)]
    batch = decode_batch(STALE_CFG, plan, samples)
    assert batch.no_answer().tolist() == [False, True, False]
    got = _by_tag(tag_points(batch, {"temp": 1, "pressure": 2}))
    for tag in (1, 2):
        assert [q for *_, q, _ in got[tag]] == [GOOD, BAD, GOOD]
        assert got[tag][1][3] == NO_ANSWER and math.isnan(got[tag][1][0])
    judged = judge(batch, lambda: None)
    assert judged.keep.tolist() == [True, False, True] and not judged.quarantined
    assert judged.lost.tolist() == [False, True, False]
    answered, inner = judged.answered(batch)
    assert len(answered) == 2 and inner.keep.tolist() == [True, True]
