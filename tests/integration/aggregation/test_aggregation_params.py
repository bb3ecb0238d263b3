"""Bad parameters fail with one clear error before any database is touched."""

from datetime import date, datetime

import pytest
from prefect.exceptions import ParameterTypeError

from blocks.bootstrap import connector_from_url
from flows.backfill import hourly_backfill
from flows.hourly_aggregation import hourly_aggregation
from flows.master_sync import master_data_sync
from shopfloor.errors import ShopfloorError
from tests.conftest import free_port


@pytest.fixture(scope="module")
def dead_db(prefect_harness) -> str:
    """A block whose database does not answer: reaching it would say "cannot connect"."""
    name = "agg-dead-db"
    connector_from_url(f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/x").save(
        name, overwrite=True)
    return name


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"start": datetime(2024, 1, 2), "end": datetime(2024, 1, 1)}, "must be after start"),
    ({"start": datetime(2024, 1, 2)}, "give both start and end"),
])
def test_aggregation_rejects_bad_parameters_before_connecting(dead_db, kwargs, message):
    with pytest.raises(ShopfloorError, match=message):
        hourly_aggregation(source_db=dead_db, target_db=dead_db, **kwargs)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"start_date": date(2024, 2, 1), "end_date": date(2024, 1, 1)}, "end_date"),
])
def test_backfill_rejects_bad_parameters_before_connecting(dead_db, kwargs, message):
    args = {"start_date": date(2024, 1, 1), "end_date": date(2024, 1, 2), **kwargs}
    with pytest.raises(ShopfloorError, match=message):
        hourly_backfill(source_db=dead_db, target_db=dead_db, **args)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"chunk_hours": 0}, "chunk_hours"),
    ({"max_concurrency": 0}, "max_concurrency"),
    ({"max_concurrency": 33}, "max_concurrency"),
    ({"start_date": "2024-13-01"}, "start_date"),
    ({"timezone": "Nowhere"}, "timezone"),
])
def test_backfill_bounds_are_in_the_parameter_schema(dead_db, kwargs, field):
    # The bounds live in the flow signature, so the Prefect server refuses such a run
    # before creating it; a plain Python call gets Prefect's parameter check.
    args = {"start_date": date(2024, 1, 1), "end_date": date(2024, 1, 2), **kwargs}
    with pytest.raises(ParameterTypeError, match=field):
        hourly_backfill(source_db=dead_db, target_db=dead_db, **args)


def test_an_unknown_time_zone_is_refused_by_the_parameter_schema(dead_db):
    # TimeZone is an enum in the flow signature: the same refusal the server gives.
    with pytest.raises(ParameterTypeError, match="timezone"):
        hourly_aggregation(source_db=dead_db, target_db=dead_db, timezone="Europe/Atlantis")


def test_an_unknown_block_is_named_in_the_error(dead_db):
    with pytest.raises(ShopfloorError, match="block 'no-such-db' not found"):
        hourly_aggregation(source_db="no-such-db", target_db=dead_db)
    with pytest.raises(ShopfloorError, match="block 'no-such-db' not found"):
        master_data_sync(source_db=dead_db, target_db="no-such-db")


def test_an_unreachable_database_is_named_with_its_reason(dead_db):
    with pytest.raises(ShopfloorError, match="cannot connect to database 'agg-dead-db'"):
        hourly_aggregation(source_db=dead_db, target_db=dead_db)
