"""check-databases loads each block once and refuses an unknown block before connecting."""

import logging

import pytest
from sqlalchemy import create_engine

import tasks.aggregation as agg
import tasks.runtime as runtime
from shopfloor.errors import ShopfloorError


@pytest.fixture
def loads(monkeypatch) -> tuple[list[str], list[str]]:
    """Record block loads and connections; ``missing`` is unknown, others are SQLite."""
    loaded: list[str] = []
    connected: list[str] = []

    def engine(name: str):
        loaded.append(name)
        if name == "missing":
            raise ShopfloorError(f"block {name!r} not found")
        engine = create_engine("sqlite://")
        engine.connect = lambda: connected.append(name) or type(engine).connect(engine)
        return engine

    monkeypatch.setattr(runtime, "engine", engine)
    monkeypatch.setattr(agg, "get_run_logger", lambda: logging.getLogger("test"))
    return loaded, connected


def test_the_same_block_for_source_and_target_is_loaded_and_checked_once(loads):
    loaded, connected = loads
    agg.check_databases.fn("db", "db")
    assert loaded == ["db"] and connected == ["db"]
    loaded.clear(), connected.clear()
    agg.check_databases.fn("src", "dst")
    assert loaded == ["src", "dst"] and connected == ["src", "dst"]


def test_an_unknown_target_fails_before_the_source_is_connected(loads):
    loaded, connected = loads
    with pytest.raises(ShopfloorError, match="block 'missing' not found"):
        agg.check_databases.fn("src", "missing")
    assert loaded == ["src", "missing"] and connected == []


def test_engines_keeps_the_order_and_loads_each_name_once(loads):
    loaded, _ = loads
    first, second, third = runtime.engines("a", "b", "a")
    assert first is third and first is not second
    assert loaded == ["a", "b"]
