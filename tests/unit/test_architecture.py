"""The layers of DESIGN.md, checked on the source: imports only point down, no module
imports itself back through others, the domain never imports prefect, flows stay thin.

The import graph is read with ``ast`` (nothing is imported or run). Every import counts,
also one inside a function (a lazy import is still a dependency), except those under
``if TYPE_CHECKING:`` (never executed).
"""

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Bottom to top: a module may import from its own layer or one below it.
LAYERS = ["shopfloor", "blocks", "tasks", "flows", "demo_steps", "deployments"]
MAX_FLOW_BODY_LINES = 40


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module (the longest prefix that is one of ours)
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    return {_module_name(p): p for layer in LAYERS for p in sorted((ROOT / layer).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (n for child in node.orelse for n in [child, *_walk(child)])
            continue
        yield node
        yield from _walk(node)


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[:len(package) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _imported_names(module: str, path: Path, tree: ast.AST) -> list[tuple[str, int]]:
    """Every dotted name the module imports (``from a import b`` gives ``a.b`` and ``a``:
    ``b`` may be a module or a name in ``a``)."""
    names = []
    for node in _walk(tree):
        if isinstance(node, ast.Import):
            names += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, path, node)
            names.append((base, node.lineno))
            names += [(f"{base}.{alias.name}", node.lineno) for alias in node.names
                      if alias.name != "*"]
    return names


def _resolve(name: str, known: set[str]) -> str | None:
    """The longest prefix of ``name`` that is one of our modules."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in known:
            return candidate
    return None


def _graph() -> tuple[dict[str, Path], list[Import], dict[str, list[tuple[str, int]]]]:
    sources = _sources()
    known = set(sources)
    edges: set[Import] = set()
    external: dict[str, list[tuple[str, int]]] = {}
    for module, path in sources.items():
        tree = ast.parse(path.read_text(), str(path))
        for name, line in _imported_names(module, path, tree):
            target = _resolve(name, known)
            if target is None:
                external.setdefault(module, []).append((name, line))
            elif target != module and not module.startswith(target + "."):
                # a package's own __init__ is not a dependency of its modules
                edges.add(Import(module, target, line))
    return sources, sorted(edges, key=lambda e: (e.module, e.target, e.line)), external


def _layer(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def _cycles(edges: list[Import]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.module, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def flow_body_lines(func: ast.FunctionDef) -> int:
    """Lines of a function's body, its docstring aside (the parameters are in the
    signature, before the body): from the first statement after the docstring to the end
    of the last one, blank and comment lines between them included."""
    body = func.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    if not body:
        return 0
    return body[-1].end_lineno - body[0].lineno + 1


def _is_flow(func: ast.FunctionDef) -> bool:
    for decorator in func.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name == "flow":
            return True
    return False


def _flows(sources: dict[str, Path]) -> list[tuple[str, ast.FunctionDef]]:
    found = []
    for module, path in sources.items():
        tree = ast.parse(path.read_text(), str(path))
        found += [(module, node) for node in ast.walk(tree)
                  if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _is_flow(node)]
    return found


def test_the_graph_is_read() -> None:
    """The test sees the code it checks: flows import tasks, tasks the domain."""
    sources, edges, _ = _graph()
    assert "flows.hourly_aggregation" in sources and "shopfloor.storage" in sources
    pairs = {(e.module, e.target) for e in edges}
    assert ("flows.hourly_aggregation", "tasks.aggregation") in pairs
    assert any(m.startswith("tasks.") and t.startswith("shopfloor.") for m, t in pairs)
    assert len(_flows(sources)) >= 10


def test_imports_only_point_down() -> None:
    _, edges, _ = _graph()
    upward = [f"{e.module}:{e.line} imports {e.target}" for e in edges
              if _layer(e.target) > _layer(e.module)]
    assert upward == [], "imports from a higher layer (" + " < ".join(LAYERS) + ")"


def test_no_import_cycle() -> None:
    _, edges, _ = _graph()
    assert _cycles(edges) == []


def test_the_domain_never_imports_prefect() -> None:
    _, _, external = _graph()
    found = [f"{module}:{line} imports {name}" for module, names in external.items()
             if module.split(".")[0] == "shopfloor"
             for name, line in names if name.split(".")[0] == "prefect"
             or name.split(".")[0].startswith("prefect_")]
    assert found == []


def test_flows_are_thin() -> None:
    sources, _, _ = _graph()
    long = {f"{module}.{func.name}": flow_body_lines(func) for module, func in _flows(sources)
            if flow_body_lines(func) > MAX_FLOW_BODY_LINES}
    assert long == {}, f"flow bodies longer than {MAX_FLOW_BODY_LINES} lines"


def _parse_function(source: str) -> ast.FunctionDef:
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.FunctionDef)
    return node


@pytest.mark.parametrize(("source", "lines"), [
    ('def f(\n    a: int = 1,\n) -> int:\n    """Doc.\n\n    More.\n    """\n    x = a\n\n'
     '    # why\n    return x\n', 4),
    ("def f():\n    return 1\n", 1),
    ('def f():\n    """Only a docstring."""\n', 0),
])
def test_flow_body_lines_count_the_body_without_docstring(source: str, lines: int) -> None:
    assert flow_body_lines(_parse_function(source)) == lines


def test_cycles_are_found() -> None:
    """The cycle finder can fail: a -> b -> c -> a is one cycle, d hangs off it."""
    edges = [Import("a", "b", 1), Import("b", "c", 1), Import("c", "a", 1),
             Import("c", "d", 1)]
    assert _cycles(edges) == [["a", "b", "c"]]
