"""Threshold breaches, their markdown and their event payloads."""

from shopfloor.aggregation.alerts import (
    EVENT_NAME,
    breach_event,
    breaches_markdown,
    by_hour,
    find_breaches,
)

LIMITS = {"A": {"temperature_min": 15.0, "temperature_max": 30.0, "humidity_min": None,
                "humidity_max": 60.0, "pcv_temperature_min": None, "pcv_temperature_max": None}}


def row(loc="A", hh="10", t_max=25.0, t_avg=20.0, h_max=50.0, h_avg=45.0):
    return {"loc_id": loc, "ymd": "20240105", "hh": hh, "temperature_max": t_max,
            "temperature_avg": t_avg, "humidity_max": h_max, "humidity_avg": h_avg,
            "pcv_temperature_max": None, "pcv_temperature_avg": None, "sample_count": 3}


def test_hours_within_limits_do_not_breach():
    assert find_breaches([row(), row(t_max=30.0, t_avg=15.0)], LIMITS) == []


def test_max_above_limit_avg_above_and_avg_below_are_breaches():
    got = find_breaches([row(hh="01", t_max=31.0), row(hh="02", t_max=35, t_avg=30.5),
                         row(hh="03", t_max=16.0, t_avg=14.0), row(hh="04", h_max=61.0)], LIMITS)
    assert [(b.hh, b.measure, b.statistic, b.bound) for b in got] == [
        ("01", "temperature", "max", "max"),
        ("02", "temperature", "avg", "max"), ("02", "temperature", "max", "max"),
        ("03", "temperature", "avg", "min"),
        ("04", "humidity", "max", "max"),
    ]


def test_locations_without_thresholds_never_breach():
    assert find_breaches([row(loc="B", t_max=99.0)], LIMITS) == []


def test_one_event_per_breached_hour_names_the_location_resource():
    breaches = find_breaches([row(t_max=31.0, t_avg=30.5)], LIMITS)
    (key, items), = by_hour(breaches).items()
    event = breach_event(*key, items, "Asia/Makassar")
    assert event["event"] == EVENT_NAME
    assert event["resource"]["prefect.resource.id"] == "shopfloor.location.A"
    assert event["payload"]["hh"] == "10" and len(event["payload"]["breaches"]) == 2
    assert event["payload"]["timezone"] == "Asia/Makassar"


def test_markdown_lists_breaches_and_caps_long_lists():
    breaches = find_breaches([row(hh=f"{h:02d}", t_max=40.0) for h in range(5)], LIMITS)
    text = breaches_markdown(breaches, "UTC", max_lines=3)
    assert "| A | 20240105 | 00 | temperature max 40.00 > max 30 |" in text
    assert "... and 2 more." in text
    assert "No hourly value" in breaches_markdown([], "UTC")
