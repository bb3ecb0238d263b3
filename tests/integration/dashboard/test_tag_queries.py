"""The dashboard's tag queries on SQLite and PostgreSQL, every number checked against
Python over the same known rows."""

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from shopfloor.dashboard import queries as q
from shopfloor.dashboard.views import trend_marks, trend_summary
from shopfloor.tags.quality import BAD, GOOD, UNCERTAIN

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
START = NOW - timedelta(hours=2)
WIDTH = 900  # 15 min: 8 buckets over the two hours
TEMPERATURE, PRESSURE, CURRENT, RECIPE, FLOW, ORPHAN = range(1, 7)

TAGS = [  # id, name, device, location, unit, data_type
    (TEMPERATURE, "temperature", "plc-a", "L1", "degC", "float32"),
    (PRESSURE, "line_pressure", "plc-a", "L1", "bar", "float32"),
    (CURRENT, "motor_current", "plc-b", "L1", "A", "float32"),
    (RECIPE, "recipe", "plc-a", "L1", None, "string"),
    (FLOW, "flow_rate", "plc-c", "L2", "m3/h", "float32"),
    (ORPHAN, "spare", "plc-x", None, None, "uint16"),
]


def sample(tag: int, at: datetime, value: float | None, quality: int = GOOD,
           reason: str | None = None, text: str | None = None) -> dict:
    return {"tag_id": tag, "ts": at, "value": value, "text_value": text, "quality": quality,
            "reason": reason, "ingested_at": at}


def pressure_samples() -> list[dict]:
    """Two hours of one point a minute, some bad or uncertain, plus one point just
    before the range and one at its (exclusive) end."""
    rows = []
    for k in range(120):
        value, quality, reason = 2.0 + (k * 7 % 11) / 10, GOOD, None
        if k % 17 == 5:
            quality, reason = BAD, "out of range [0, 2.5]"
        elif k % 23 == 3:
            quality, reason = UNCERTAIN, "stale"
        if k == 50:
            value, quality, reason = None, BAD, "read failed"
        rows.append(sample(PRESSURE, START + timedelta(minutes=k), value, quality, reason))
    rows.append(sample(PRESSURE, START - timedelta(seconds=1), 99.0))
    rows.append(sample(PRESSURE, NOW, 77.0))
    return rows


RECIPES = [(0, "A"), (1, "A"), (30, "B"), (31, "B"), (45, None), (46, "B"), (90, "C")]


def recipe_samples() -> list[dict]:
    return [sample(RECIPE, START + timedelta(minutes=m), None,
                   GOOD if text else BAD, None if text else "read failed", text)
            for m, text in RECIPES]


def other_samples() -> list[dict]:
    return [sample(CURRENT, START - timedelta(days=1), 4.2),  # only long before the range
            sample(FLOW, START + timedelta(minutes=10), 12.5)]


@pytest.fixture
def known(wh):
    wh.insert(wh.tables.tags, [
        {"id": i, "name": n, "device": d, "location": loc, "unit": u, "data_type": dt,
         "description": None, "source_name": f"holding:{100 + i}", "updated_at": NOW}
        for i, n, d, loc, u, dt in TAGS])
    rows = pressure_samples() + recipe_samples() + other_samples()
    wh.insert(wh.tables.tag_samples, rows)
    return wh, rows


def in_range(rows: list[dict], tag: int) -> list[dict]:
    return [r for r in rows if r["tag_id"] == tag and START <= r["ts"] < NOW]


def python_trend(rows: list[dict]) -> list[tuple]:
    buckets = defaultdict(list)
    for r in rows:
        buckets[(r["tag_id"], int(r["ts"].timestamp()) // WIDTH * WIDTH)].append(r)
    out = []
    for (tag, epoch), points in sorted(buckets.items()):
        values = [p["value"] for p in points if p["value"] is not None]
        out.append((tag, datetime.fromtimestamp(epoch, UTC), len(points), len(values),
                    min(values), sum(values) / len(values), max(values),
                    sum(p["quality"] >= GOOD for p in points),
                    sum(UNCERTAIN <= p["quality"] < GOOD for p in points),
                    sum(p["quality"] < UNCERTAIN for p in points)))
    return out


def test_the_registry_is_filtered_by_location_device_and_unit(known):
    wh, _ = known

    def ids(**filters) -> list[int]:
        with wh.engine.connect() as conn:
            return sorted(q.tags(conn, wh.tables, **filters)["tag_id"])

    assert ids() == [1, 2, 3, 4, 5, 6]
    assert ids(locations=["L1"]) == [TEMPERATURE, PRESSURE, CURRENT, RECIPE]
    assert ids(locations=["L1"], devices=["plc-a"]) == [TEMPERATURE, PRESSURE, RECIPE]
    assert ids(units=["bar", "A"]) == [PRESSURE, CURRENT]
    assert ids(units=[None]) == [RECIPE, ORPHAN]
    assert ids(locations=["L1"], units=[None, "bar"]) == [PRESSURE, RECIPE]
    assert ids(locations=[None]) == [ORPHAN]
    with wh.engine.connect() as conn:
        one = q.tags(conn, wh.tables, devices=["plc-c"]).to_dict("records")
    assert one == [{"tag_id": FLOW, "name": "flow_rate", "device": "plc-c", "location": "L2",
                    "unit": "m3/h", "data_type": "float32", "description": None}]


def test_trend_buckets_min_avg_max_and_quality_counts_in_the_database(known):
    wh, rows = known
    with wh.engine.connect() as conn:
        df = q.tag_trend(conn, wh.tables, [PRESSURE, FLOW], START, NOW, WIDTH)
    expected = python_trend(in_range(rows, PRESSURE) + in_range(rows, FLOW))
    assert len(df) == 9 and len(expected) == 9  # 8 buckets of pressure, one of flow
    got = [tuple(r) for r in df.itertuples(index=False)]
    for g, e in zip(got, expected, strict=True):
        assert g[:4] == e[:4] and g[7:] == e[7:]
        assert g[4:7] == pytest.approx(e[4:7])
    # the bad value kept as it arrived is in the band; the point without a value is not
    assert df["points"].sum() == 121 and df["values"].sum() == 120
    assert df[["good", "uncertain", "bad"]].sum().to_dict() == {
        "good": 107, "uncertain": 6, "bad": 8}
    with wh.engine.connect() as conn:
        assert q.tag_trend(conn, wh.tables, [], START, NOW, WIDTH).empty


def test_marks_count_the_points_not_good_per_bucket_quality_and_reason(known):
    wh, rows = known
    with wh.engine.connect() as conn:
        trend = q.tag_trend(conn, wh.tables, [PRESSURE], START, NOW, WIDTH)
        marks = q.tag_marks(conn, wh.tables, [PRESSURE], START, NOW, WIDTH)
    expected = defaultdict(int)
    for r in in_range(rows, PRESSURE):
        if r["quality"] < GOOD:
            bucket = datetime.fromtimestamp(int(r["ts"].timestamp()) // WIDTH * WIDTH, UTC)
            expected[(PRESSURE, bucket, r["quality"], r["reason"])] += 1
    assert {(r.tag_id, r.bucket_start, r.quality, r.reason): r.points
            for r in marks.itertuples()} == dict(expected)
    shown = trend_marks(trend, marks)
    # 10:45-11:00 holds k = 45..59: bad at 56 (out of range), bad at 50 (read failed)
    # and uncertain at 49 (stale)
    row = shown[shown["bucket_start"] == START + timedelta(minutes=45)].iloc[0]
    assert row["reasons"] == "bad 1: out of range [0, 2.5]; bad 1: read failed; uncertain 1: stale"
    assert row["worst"] == "bad"
    assert (row["bad"], row["uncertain"]) == (2, 1)
    clean = shown[(shown["bad"] == 0) & (shown["uncertain"] == 0)]
    assert set(clean["reasons"]) <= {""} and set(clean["worst"]) <= {"good"}
    summary = trend_summary(trend).iloc[0]
    values = [r["value"] for r in in_range(rows, PRESSURE) if r["value"] is not None]
    assert (summary["points"], summary["not_good"]) == (120, 14)
    assert (summary["value_min"], summary["value_max"]) == (min(values), max(values))
    assert summary["value_avg"] == pytest.approx(sum(values) / len(values))


def test_text_tags_show_their_changes_newest_first(known):
    wh, _ = known
    with wh.engine.connect() as conn:
        df = q.tag_changes(conn, wh.tables, [RECIPE], START, NOW)
        two = q.tag_changes(conn, wh.tables, [RECIPE], START, NOW, limit=2)
        later = q.tag_changes(conn, wh.tables, [RECIPE], START + timedelta(minutes=35), NOW)
    # 0 "A" (first), 30 "B", 45 no text (read failed), 46 "B" again, 90 "C"
    assert [(r.ts, r.text_value, r.quality, r.reason) for r in df.itertuples()] == [
        (START + timedelta(minutes=90), "C", GOOD, None),
        (START + timedelta(minutes=46), "B", GOOD, None),
        (START + timedelta(minutes=45), None, BAD, "read failed"),
        (START + timedelta(minutes=30), "B", GOOD, None),
        (START + timedelta(minutes=0), "A", GOOD, None)]
    assert list(two["text_value"]) == ["C", "B"]
    assert [(r.ts, r.text_value) for r in later.itertuples()] == [  # the range's first point
        (START + timedelta(minutes=90), "C"), (START + timedelta(minutes=46), "B"),
        (START + timedelta(minutes=45), None)]


def test_quality_per_tag_of_a_location_with_its_latest_point(known):
    wh, rows = known
    with wh.engine.connect() as conn:
        df = q.tag_quality(conn, wh.tables, "L1", START, NOW)
        orphans = q.tag_quality(conn, wh.tables, None, START, NOW)
    pressure = in_range(rows, PRESSURE)
    last = max(pressure, key=lambda r: r["ts"])  # the point at NOW is outside the range
    assert [(r.tag_id, r.name, r.device, r.unit, r.points, r.good, r.uncertain, r.bad)
            for r in df.itertuples()] == [
        (PRESSURE, "line_pressure", "plc-a", "bar", 120,
         sum(r["quality"] == GOOD for r in pressure), 6, 8),
        (RECIPE, "recipe", "plc-a", None, 7, 6, 0, 1),
        (TEMPERATURE, "temperature", "plc-a", "degC", 0, 0, 0, 0),
        (CURRENT, "motor_current", "plc-b", "A", 0, 0, 0, 0)]
    by_id = df.set_index("tag_id")
    assert by_id.loc[PRESSURE, "latest_ts"] == last["ts"] == NOW - timedelta(minutes=1)
    assert by_id.loc[PRESSURE, "latest_value"] == pytest.approx(last["value"])
    assert by_id.loc[PRESSURE, "latest_quality"] == last["quality"]
    assert by_id.loc[RECIPE, "latest_text"] == "C"
    assert by_id.loc[CURRENT, "latest_ts"] == START - timedelta(days=1)  # however old
    assert by_id.loc[CURRENT, "latest_value"] == 4.2
    assert by_id["latest_ts"].isna().tolist() == [False, False, True, False]
    assert list(orphans["name"]) == ["spare"] and orphans["points"].iloc[0] == 0


def test_a_warehouse_without_the_tag_tables_shows_no_tags(wh):
    with wh.engine.begin() as conn:
        wh.tables.tags.drop(conn)
    with wh.engine.connect() as conn:
        assert q.tags(conn, wh.tables).empty
        assert q.tag_quality(conn, wh.tables, "L1", START, NOW).empty


def test_another_range_gets_its_own_bucket_width_from_the_same_engine(known):
    """The width is inline SQL: a statement cached for one width must not serve another."""
    wh, rows = known
    with wh.engine.connect() as conn:
        fine = q.tag_trend(conn, wh.tables, [PRESSURE], START, NOW, WIDTH)
        coarse = q.tag_trend(conn, wh.tables, [PRESSURE], START, NOW, 3600)
        marks = q.tag_marks(conn, wh.tables, [PRESSURE], START, NOW, 3600)
    assert len(fine) == 8
    assert list(coarse["bucket_start"]) == [START, START + timedelta(hours=1)]
    assert list(coarse["points"]) == [60, 60]
    assert marks["points"].sum() == sum(r["quality"] < GOOD for r in in_range(rows, PRESSURE))
    assert set(marks["bucket_start"]) == {START, START + timedelta(hours=1)}
