"""The daily rollup from hourly rows: exact (no average of averages), NULLs, DST days."""

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, insert, select

from shopfloor.aggregation.daily import (
    PARTS,
    daily_row,
    refresh_days,
    window_days,
)
from shopfloor.aggregation.hours import local_hour_index, ymd_hh
from shopfloor.aggregation.windows import Window
from shopfloor.db.engine import init_db
from shopfloor.db.schema import get_tables

BERLIN = ZoneInfo("Europe/Berlin")
MEASURES = ("temperature", "humidity", "pcv_temperature")


def _hourly_from_samples(samples):
    """Hourly rows (with rollup parts) of (loc, utc time, temperature or None) samples,
    bucketed by local hour in Berlin, the way the GROUP BY does."""
    groups: dict = {}
    for loc, ts, value in samples:
        ymd, hh = ymd_hh(local_hour_index(ts, BERLIN))
        groups.setdefault((loc, ymd, hh), []).append(value)
    rows = []
    for (loc, ymd, hh), values in groups.items():
        seen = [v for v in values if v is not None]
        row = {"loc_id": loc, "ymd": ymd, "hh": hh, "sample_count": len(values)}
        for m in MEASURES:
            vals = seen if m == "temperature" else []
            row.update({f"{m}_count": len(vals), f"{m}_sum": sum(vals) if vals else None,
                        f"{m}_min": min(vals, default=None), f"{m}_max": max(vals, default=None),
                        f"{m}_avg": sum(vals) / len(vals) if vals else None})
        rows.append(row)
    return rows


def _roll_up(hours):
    """The daily rows of some hourly rows, in Python: the reference the SQL of
    :func:`refresh_days` is checked against (parts summed, min'd, max'd per day)."""
    groups: dict = {}
    for row in hours:
        key = (row["loc_id"], row["ymd"])
        g = groups.setdefault(key, {"loc_id": key[0], "ymd": key[1], "hours": 0,
                                    "sample_count": 0,
                                    **{f"{m}_{p}": None for m in MEASURES for p in PARTS}})
        g["hours"] += 1
        g["sample_count"] += int(row["sample_count"])
        for m in MEASURES:
            for part, pick in (("count", None), ("sum", None), ("min", min), ("max", max)):
                value, old = row.get(f"{m}_{part}"), g[f"{m}_{part}"]
                if value is None:
                    continue
                g[f"{m}_{part}"] = (value if old is None else
                                    (old + value if pick is None else pick(old, value)))
    return [daily_row(g) for _, g in sorted(groups.items())]


def _samples(day_start_utc, hours, rng):
    out, t = [], day_start_utc
    while t < day_start_utc + timedelta(hours=hours):
        # uneven samples per hour: an average of averages would be wrong
        if rng.random() < 0.8:
            out.append(("L1", t, None if rng.random() < 0.1 else round(rng.uniform(10, 30), 3)))
        t += timedelta(minutes=rng.choice((1, 5, 7)))
    return out


@pytest.mark.parametrize(("ymd", "hours"), [("20240331", 23), ("20241027", 25),
                                            ("20240601", 24)])
def test_dst_days_roll_up_exactly_from_hours(ymd, hours):
    day = datetime.strptime(ymd, "%Y%m%d").replace(tzinfo=BERLIN).astimezone(UTC)
    samples = _samples(day, hours, random.Random(ymd))
    (row,) = _roll_up(_hourly_from_samples(samples))
    values = [v for _, _, v in samples if v is not None]
    assert row["ymd"] == ymd
    assert row["sample_count"] == len(samples)
    assert row["temperature_count"] == len(values)
    assert row["temperature_avg"] == pytest.approx(sum(values) / len(values), rel=1e-12)
    assert (row["temperature_min"], row["temperature_max"]) == (min(values), max(values))
    # 25 real hours, but the repeated local hour 02 is one bucket: 24 hourly rows
    assert row["hours"] == {23: 23, 24: 24, 25: 24}[hours]
    hourly_avgs = [r["temperature_avg"] for r in _hourly_from_samples(samples)]
    assert row["temperature_avg"] != pytest.approx(sum(hourly_avgs) / len(hourly_avgs),
                                                    rel=1e-9)  # the wrong way differs


def test_a_measure_never_seen_is_null_not_zero():
    group = {"loc_id": "L1", "ymd": "20240101", "hours": 2, "sample_count": 7,
             **{f"{m}_{p}": None for m in MEASURES for p in ("count", "sum", "min", "max")}}
    group.update(temperature_count=3, temperature_sum=60.0, temperature_min=10.0,
                 temperature_max=30.0, humidity_count=0, humidity_sum=0.0)
    row = daily_row(group)
    assert row["temperature_avg"] == 20.0
    assert (row["humidity_count"], row["humidity_avg"], row["humidity_sum"]) == (0, None, None)
    assert (row["pcv_temperature_count"], row["pcv_temperature_avg"]) == (0, None)


def test_window_days_are_the_local_days_of_its_hours():
    first = local_hour_index(datetime(2024, 3, 30, 22, tzinfo=BERLIN), BERLIN)
    last = local_hour_index(datetime(2024, 4, 2, 1, tzinfo=BERLIN), BERLIN)
    assert window_days(Window(first, last)) == ["20240330", "20240331", "20240401",
                                                "20240402"]
    assert window_days(Window(first, first + 1)) == ["20240330"]
    assert window_days(Window(first, first)) == []


def test_refresh_days_in_sql_equals_the_python_rollup():
    engine = create_engine("sqlite://")
    tables = init_db(engine, tables=get_tables())
    day = datetime(2024, 10, 27, tzinfo=BERLIN).astimezone(UTC)
    hourly = _hourly_from_samples(_samples(day - timedelta(hours=3), 30, random.Random(1)))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(insert(tables.temperature_hourly), [dict(r, updated_at=now)
                                                         for r in hourly])
        written = refresh_days(conn, tables, ["20241026", "20241027", "20241028"], None, now)
        stored = [dict(r) for r in conn.execute(
            select(tables.temperature_daily).order_by("ymd")).mappings()]
    expected = _roll_up(hourly)
    assert written == len(expected) == 3
    for got, want in zip(stored, expected, strict=True):
        assert got.pop("updated_at") is not None
        assert got.keys() == want.keys()
        for k, v in want.items():
            assert got[k] == (pytest.approx(v, rel=1e-12) if isinstance(v, float) else v), k


def test_the_daily_statement_and_rollup_parts_compile_for_sql_server():
    from sqlalchemy.dialects import mssql

    from shopfloor.aggregation.daily import daily_select
    from shopfloor.aggregation.hours import offset_segments
    from shopfloor.aggregation.statements import aggregate_select

    tables = get_tables()
    sql = str(daily_select(tables, ["20240331"], ["L1"]).compile(dialect=mssql.dialect()))
    assert "sum(temperature_hourly.temperature_count) AS temperature_count" in sql
    assert "min(temperature_hourly.humidity_min) AS humidity_min" in sql
    assert "GROUP BY temperature_hourly.loc_id, temperature_hourly.ymd" in sql
    start, end = datetime(2024, 3, 30, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC)
    hourly = str(aggregate_select(tables, offset_segments(start, end, BERLIN), start, end)
                 .compile(dialect=mssql.dialect()))
    assert "count(b.temperature) AS temperature_count" in hourly
    assert "sum(b.pcv_temperature) AS pcv_temperature_sum" in hourly
