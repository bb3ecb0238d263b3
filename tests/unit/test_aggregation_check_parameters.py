"""The aggregation flows' parameter checks and the CLI's type check: no service needed."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from prefect.utilities.callables import parameter_schema

from flows import backfill, hourly_aggregation
from shopfloor.errors import ShopfloorError
from shopfloor.params import check_typed


def test_aggregation_check_returns_the_zone_and_refuses_what_the_schema_cannot():
    check = hourly_aggregation.check_parameters
    assert check(None, None, "Asia/Makassar") == ZoneInfo("Asia/Makassar")
    with pytest.raises(ShopfloorError, match="give both start and end"):
        check(datetime(2024, 1, 2), None, "UTC")
    with pytest.raises(ShopfloorError, match="must be after start"):
        check(datetime(2024, 1, 2), datetime(2024, 1, 1), "UTC")
    with pytest.raises(ShopfloorError, match="unknown time zone 'Europe/Atlantis'"):
        check(None, None, "Europe/Atlantis")


def test_backfill_check_returns_the_zone_and_refuses_a_backward_range():
    check = backfill.check_parameters
    assert check(date(2024, 1, 1), date(2024, 1, 1), "UTC") == ZoneInfo("UTC")
    with pytest.raises(ShopfloorError, match="end_date"):
        check(date(2024, 2, 1), date(2024, 1, 1), "UTC")
    with pytest.raises(ShopfloorError, match="unknown time zone"):
        check(date(2024, 1, 1), date(2024, 1, 2), "Nowhere")


@pytest.mark.parametrize("flow", [hourly_aggregation.hourly_aggregation,
                                  backfill.hourly_backfill])
def test_the_time_zone_is_an_enum_in_the_parameter_schema(flow):
    zone = parameter_schema(flow.fn).model_dump_for_openapi()["properties"]["timezone"]
    assert "Asia/Makassar" in zone["enum"] and "Europe/Atlantis" not in zone["enum"]
    assert zone["default"] == "UTC"


@pytest.mark.parametrize(("params", "message"), [
    ({"max_concurrency": 33}, "max_concurrency: Input should be less than or equal to 32"),
    ({"chunk_hours": 0}, "chunk_hours: Input should be greater than or equal to 1"),
    ({"timezone": "Mars/Base"}, "timezone: 'Mars/Base' is not an allowed value"),
])
def test_the_cli_applies_the_flow_types_in_one_line(params, message):
    with pytest.raises(ShopfloorError) as info:
        check_typed(backfill.hourly_backfill, **params)
    assert str(info.value).startswith(message)


def test_the_cli_type_check_passes_good_values():
    check_typed(backfill.hourly_backfill, start_date=date(2024, 1, 1), chunk_hours=24,
                max_concurrency=32, timezone="Asia/Makassar", source_db="x")
    check_typed(hourly_aggregation.hourly_aggregation, start=None,
                end=datetime(2024, 1, 1), late_data=False)
