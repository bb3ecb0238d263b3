"""One schema per merged partition: columns unioned by name, types widened or cast.

The compaction output's schema changes between batches when a JSON field appears (or
turns from a number into text). A merge reads every input file with the partition's
unified schema:

- a column missing from some files is NULL there;
- integers of any width become BIGINT; integers and floating point (or decimals) DOUBLE;
- a column of type NULL (JSON ``null`` only) takes the other files' type;
- any other disagreement (a number in one batch, text or an object in another) is cast
  to text: VARCHAR, nested values as their JSON text. Nothing is lost, the column is
  reported, and the partition is merged rather than left small forever.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

INTEGER_TYPES = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
                           "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"})
FLOAT_TYPES = frozenset({"FLOAT", "DOUBLE"})
TEXT = "VARCHAR"


def _numeric(t: str) -> bool:
    return t in INTEGER_TYPES or t in FLOAT_TYPES or t.startswith("DECIMAL")


def _nested(t: str) -> bool:
    return t.startswith(("STRUCT", "MAP", "UNION")) or t.endswith("]")


def widen(a: str | None, b: str) -> tuple[str, str | None]:
    """The type for a column seen as ``a`` so far and ``b`` in another file, and what was
    done (``None``, ``"widened"`` or ``"cast to text"``)."""
    if a is None or a == b or b == "NULL":
        return (b if a is None else a), None
    if a == "NULL":
        return b, None
    if a in INTEGER_TYPES and b in INTEGER_TYPES:
        return "BIGINT", "widened"
    if _numeric(a) and _numeric(b):
        return "DOUBLE", "widened"
    if {a, b} <= {"JSON", TEXT}:
        return TEXT, "widened"
    return TEXT, "cast to text"


@dataclass
class UnifiedSchema:
    """Column name -> type in first-seen order, and what the unification did."""

    columns: dict[str, str] = field(default_factory=dict)
    changes: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for the artifact: ``added x; widened y BIGINT->DOUBLE; ...``."""
        return "; ".join(f"{name}: {what}" for name, what in sorted(self.changes.items()))


def unify(schemas: Iterable[Mapping[str, str]]) -> UnifiedSchema:
    """The unified schema of files whose schemas (name -> DuckDB type) are given."""
    schemas = list(schemas)
    out = UnifiedSchema()
    seen: dict[str, set[str]] = {}
    for schema in schemas:
        for name, typ in schema.items():
            seen.setdefault(name, set()).add(typ)
            new, what = widen(out.columns.get(name), typ)
            out.columns[name] = new
            if what and out.changes.get(name) != "cast to text":
                out.changes[name] = what
    for name, types in seen.items():
        if name in out.changes:
            out.changes[name] += f" ({', '.join(sorted(types))} -> {out.columns[name]})"
        missing = sum(1 for s in schemas if name not in s)
        if missing:
            note = f"missing in {missing} of {len(schemas)} schemas (NULL there)"
            out.changes[name] = f"{out.changes[name]}; {note}" if name in out.changes else note
    return out


def quote(name: str) -> str:
    """A DuckDB identifier (double quotes doubled): column names come from the files."""
    return '"' + name.replace('"', '""') + '"'


def cast_expression(name: str, source: str | None, target: str) -> str:
    """The select expression reading column ``name`` of type ``source`` (``None``: the
    file lacks it) as ``target``."""
    q = quote(name)
    if source is None:
        return f"CAST(NULL AS {target}) AS {q}"
    if source == target:
        return q
    if target == TEXT and (_nested(source) or source == "JSON"):
        return f"CAST(to_json({q}) AS VARCHAR) AS {q}"
    return f"CAST({q} AS {target}) AS {q}"


def select_list(file_schema: Mapping[str, str], unified: UnifiedSchema) -> str:
    """The select list reading a file of ``file_schema`` as the unified schema."""
    return ", ".join(cast_expression(n, file_schema.get(n), t)
                     for n, t in unified.columns.items())
