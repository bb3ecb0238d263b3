"""One seam between our code and Prefect (tasks/runtime.py): the source tree derives the
run id in one place, makes an engine from a block in one place, reads no private
attribute of a block, and takes task options from the presets; the one engine cache
keeps one engine per block's database and the block's connect_args."""

import ast
import re
from pathlib import Path

import pytest
from prefect_sqlalchemy import ConnectionComponents, SqlAlchemyConnector
from sqlalchemy import text

import tasks.runtime as runtime
from blocks.resolve import connector_url
from shopfloor.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("flows", "tasks", "blocks", "deployments", "demo_steps")
SEAM = "tasks/runtime.py"
ENGINE_MAKERS = {"make_engine", "create_engine", "get_engine"}
CONNECTOR_NAMES = {"SqlAlchemyConnector", "connector_url", "connector_connect_args",
                   "connection_info", "load_block"}
# SQLAlchemy's Row exposes its mapping view as ``_mapping``: public API despite the name.
PUBLIC_UNDERSCORED = {"_mapping"}
TASK_OPTIONS = {"retries", "retry_delay_seconds", "retry_condition_fn", "cache_policy",
                "timeout_seconds"}


def _sources() -> dict[str, ast.Module]:
    files = sorted(p for d in SCANNED for p in (ROOT / d).rglob("*.py"))
    return {p.relative_to(ROOT).as_posix(): ast.parse(p.read_text(), str(p)) for p in files}


SOURCES = _sources()


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}


def _called(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def prefect_runtime_imports(tree: ast.Module) -> list[int]:
    """Lines importing ``prefect.runtime`` (the API that tells who is running)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("prefect"):
            if node.module.startswith("prefect.runtime") or any(
                    a.name == "runtime" for a in node.names):
                lines.append(node.lineno)
        elif isinstance(node, ast.Import) and any(
                a.name.startswith("prefect.runtime") for a in node.names):
            lines.append(node.lineno)
    return lines


def run_id_derivations(tree: ast.Module) -> list[int]:
    """Lines that read a run id off Prefect (``flow_run.id``, ``.get_id()``,
    ``.flow_run_id``) or define a run-id helper of their own."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and (
                node.attr in ("get_id", "flow_run_id")
                or (node.attr == "id" and isinstance(node.value, (ast.Name, ast.Attribute))
                    and (getattr(node.value, "id", None) == "flow_run"
                         or getattr(node.value, "attr", None) == "flow_run"))):
            lines.append(node.lineno)
        elif isinstance(node, ast.FunctionDef) and node.name.lstrip("_") in (
                "run_id", "run_token", "current_run_id"):
            lines.append(node.lineno)
    return lines


def engine_makers(tree: ast.Module) -> list[int]:
    """Lines that call an engine factory."""
    return [n.lineno for n in ast.walk(tree)
            if isinstance(n, ast.Call) and _called(n) in ENGINE_MAKERS]


def engine_caches(tree: ast.Module) -> list[int]:
    """Module-level containers of engines, and cached functions that make engines (a
    cache of what the seam returns, such as the dashboard's per-server one, is not a
    second way to make them)."""
    lines = []
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and "Engine" in ast.unparse(node.annotation):
            lines.append(node.lineno)
        if isinstance(node, ast.FunctionDef) and engine_makers(node) \
                and any("cache" in ast.unparse(d) for d in node.decorator_list):
            lines.append(node.lineno)
    return lines


def private_reads(tree: ast.Module) -> list[int]:
    """Lines reading ``x._name`` of another object (a block's ``_rendered_url``...), or
    the same through ``getattr(x, "_name")``."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__") and node.attr not in PUBLIC_UNDERSCORED \
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            lines.append(node.lineno)
        elif isinstance(node, ast.Call) and _called(node) == "getattr" and len(node.args) > 1 \
                and isinstance(node.args[1], ast.Constant) \
                and str(node.args[1].value).startswith("_"):
            lines.append(node.lineno)
    return lines


def literal_task_options(tree: ast.Module) -> list[int]:
    """Lines of ``@task(...)`` decorators that spell retries, caching or timeouts out
    instead of taking a preset."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            for deco in node.decorator_list:
                if isinstance(deco, ast.Call) and _called(deco) == "task" and any(
                        k.arg in TASK_OPTIONS for k in deco.keywords):
                    lines.append(deco.lineno)
    return lines


def _offenders(check, allowed: tuple[str, ...] = (SEAM,)) -> dict[str, list[int]]:
    found = {path: check(tree) for path, tree in SOURCES.items() if path not in allowed}
    return {path: lines for path, lines in found.items() if lines}


def test_the_scan_covers_every_module_of_the_layers_above_the_domain():
    assert SEAM in SOURCES and "flows/s3_compaction.py" in SOURCES
    assert {p.split("/")[0] for p in SOURCES} == set(SCANNED)
    assert len(SOURCES) == sum(len(list((ROOT / d).rglob("*.py"))) for d in SCANNED)


def test_the_detectors_see_what_they_look_for():
    bad = ast.parse(
        "from prefect.runtime import flow_run\n"
        "from prefect import runtime\n"
        "def _run_id():\n"
        "    return str(flow_run.get_id() or flow_run.id)\n"
        "url = connector._rendered_url\n"
        "args = getattr(connector, '_engine')\n"
        "engine = create_engine(url)\n"
        "_CACHE: dict[str, Engine] = {}\n"
        "@task(name='x', retries=2)\n"
        "def t(): ...\n"
        "@lru_cache\n"
        "def made(url): return make_engine(url)\n")
    assert prefect_runtime_imports(bad) == [1, 2]
    assert run_id_derivations(bad) == [3, 4, 4]
    assert private_reads(bad) == [5, 6]
    assert engine_makers(bad) == [7, 12]
    assert engine_caches(bad) == [8, 12]  # a decorated def starts at its def
    assert literal_task_options(bad) == [9]
    fine = ast.parse("row._mapping\nself._lock\nrun.id\nrow = {'flow_run_id': 1}\n")
    assert private_reads(fine) == [] and run_id_derivations(fine) == []


def test_only_the_seam_asks_prefect_who_is_running():
    assert _offenders(prefect_runtime_imports) == {}
    assert prefect_runtime_imports(SOURCES[SEAM])


def test_one_place_derives_the_run_id():
    assert _offenders(run_id_derivations) == {}
    seam = {n.name for n in ast.walk(SOURCES[SEAM]) if isinstance(n, ast.FunctionDef)}
    assert {"run_id", "run_token"} <= seam
    assert not (ROOT / "tasks" / "clock.py").exists()  # logical time lives in the seam


def test_one_place_makes_an_engine_from_a_block():
    # A module that makes an engine itself never holds a connector (only a URL typed
    # by hand): connectors become engines in the seam alone, in one function.
    makers = _offenders(engine_makers)
    assert all(not (_names(SOURCES[path]) & CONNECTOR_NAMES) for path in makers), makers
    seam_makers = [n.name for n in ast.walk(SOURCES[SEAM]) if isinstance(n, ast.FunctionDef)
                   and engine_makers(n)]
    assert seam_makers == ["engine"]
    assert not any("get_engine" in ast.unparse(t) for t in SOURCES.values())


def test_the_seam_keeps_the_only_engine_cache():
    assert _offenders(engine_caches) == {}
    assert engine_caches(SOURCES[SEAM])


def test_no_private_attribute_of_a_block_is_read():
    assert _offenders(private_reads, allowed=()) == {}
    texts = [p.read_text() for d in SCANNED for p in (ROOT / d).rglob("*.py")]
    assert not any(re.search(r"_rendered_url", t) for t in texts)


def test_task_options_come_from_the_presets():
    assert _offenders(literal_task_options) == {}
    assert runtime.RETRIED["retry_condition_fn"] is runtime.transient
    assert runtime.LIVE["cache_policy"] is not None


# ---------------------------------------------------------------- the engine cache

@pytest.fixture
def loads(monkeypatch, tmp_path) -> list[str]:
    """Real connectors to real SQLite files, handed out by name as a server would; the
    names loaded are recorded."""
    url = f"sqlite+pysqlite:///{tmp_path / 'wh.db'}"
    saved = {
        "wh": SqlAlchemyConnector(connection_info=url,
                                  connect_args={"isolation_level": "IMMEDIATE"}),
        "wh-again": SqlAlchemyConnector(connection_info=url,
                                        connect_args={"isolation_level": "IMMEDIATE"}),
        "wh-plain": SqlAlchemyConnector(connection_info=url),
        "other": SqlAlchemyConnector(connection_info=ConnectionComponents(
            driver="sqlite+pysqlite", database=str(tmp_path / "other.db"))),
    }
    loaded: list[str] = []

    def load_block(name: str, block_class: type) -> SqlAlchemyConnector:
        loaded.append(name)
        if name not in saved:
            raise UserError(f"block {name!r} not found")
        assert block_class is SqlAlchemyConnector
        return saved[name]

    monkeypatch.setattr(runtime, "load_block", load_block)
    monkeypatch.setattr(runtime, "_ENGINES", type(runtime._ENGINES)())
    return loaded


def test_the_same_block_gives_the_same_engine_and_keeps_its_connect_args(loads):
    first, again = runtime.engine("wh"), runtime.engine("wh")
    assert first is again
    assert runtime.engine("wh-again") is first  # the same database and arguments
    with first.connect() as conn:
        # the block's connect_args reached the driver's connect()
        assert conn.connection.driver_connection.isolation_level == "IMMEDIATE"
        assert conn.execute(text("SELECT 1")).scalar() == 1
    plain = runtime.engine("wh-plain")
    assert plain is not first and plain.url == first.url
    with plain.connect() as conn:
        assert conn.connection.driver_connection.isolation_level != "IMMEDIATE"


def test_engines_loads_each_name_once_and_keeps_the_order(loads):
    first, other, third = runtime.engines("wh", "other", "wh")
    assert first is third and first is not other
    assert loads == ["wh", "other"]
    assert other.url.database.endswith("other.db")


def test_an_unknown_block_fails_before_anything_connects(loads):
    with pytest.raises(UserError, match="block 'missing' not found"):
        runtime.engines("wh", "missing")
    assert len(runtime._ENGINES) == 1  # made, never connected: engines connect lazily


def test_the_url_comes_from_the_public_connection_info():
    components = SqlAlchemyConnector(connection_info=ConnectionComponents(
        driver="postgresql+psycopg2", username="app", password="s3cret", host="db",
        port=5433, database="wh", query={"sslmode": "require"}))
    assert connector_url(components) == \
        "postgresql+psycopg2://app:s3cret@db:5433/wh?sslmode=require"
    as_text = SqlAlchemyConnector(connection_info="postgresql+psycopg2://app:s3cret@db/wh")
    assert connector_url(as_text) == "postgresql+psycopg2://app:s3cret@db/wh"


def test_outside_a_flow_run_the_run_id_is_none_and_the_token_is_fresh():
    assert runtime.run_id() is None
    first, second = runtime.run_token(), runtime.run_token()
    assert first and second and first != second
    assert runtime.scheduled_start() is None
