"""The ``shopfloor`` commands that run a flow follow the flow: every option's default is
the flow signature's, its limits are the ones the flow's parameter schema (what the
Prefect server and the UI form enforce) states, and a bad value is one line, exit 2."""

import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deployments import cli
from deployments.cli import GROUPS, load_group, main
from deployments.flowcli import FLOW_COMMANDS, FlowCommand, load

ROOT = Path(__file__).resolve().parents[2]

# Options of flow commands that are not flow parameters, each a deliberate choice.
EXTRAS = {("compaction", "run"): {"until_done"}}
# Commands that run a flow without options: the flow has no parameters.
NO_PARAMETERS = {("", "demo")}


def _typer(group: str) -> Any:
    module, attribute = GROUPS[group][0].split(":")
    return getattr(importlib.import_module(module), attribute)


APPS = {id(_typer(name)): name for name in GROUPS}  # importing them registers FLOW_COMMANDS
CASES = [(APPS[id(c.app)], c) for c in FLOW_COMMANDS]


def _schema(flow: Any, name: str) -> dict[str, Any]:
    """The JSON schema of one parameter, without its ``null`` alternative; a list's items."""
    prop = flow.parameters.properties[name]
    prop = next((p for p in prop.get("anyOf", [prop]) if p.get("type") != "null"), prop)
    return prop.get("items", prop) if prop.get("type") == "array" else prop


def test_every_flow_running_group_command_is_generated():
    assert {(group, c.name) for group, c in CASES} == {
        ("hourly", "aggregate"), ("hourly", "backfill"), ("hourly", "sync-locations"),
        ("compaction", "register"), ("compaction", "run"), ("lake", "merge"),
        ("lake", "export-tags"),
        ("modbus", "capture"), ("modbus", "reprocess"), ("spark", "extract"),
        ("credentials", "refresh"), ("mqtt", "ingest")}


@pytest.mark.parametrize("group, spec", CASES, ids=[f"{g} {c.name}" for g, c in CASES])
def test_each_option_has_the_flow_default_and_the_flow_limits(group: str, spec: FlowCommand):
    click_command = load(load_group(group).commands[spec.name])
    signature = inspect.signature(spec.flow.fn).parameters
    params = {p.name: p for p in click_command.params}
    offered = set(signature) - set(spec.skipped)
    # Every option is a flow parameter or a deliberate extra: no hand-written default.
    assert set(params) == offered | EXTRAS.get((group, spec.name), set())
    assert {p.name for p in spec.extras} == EXTRAS.get((group, spec.name), set())
    for option in spec.options:
        param, flow_default = params[option.param], signature[option.param].default
        assert param.help, f"{spec.name} {option.param}: no help"
        if flow_default is inspect.Parameter.empty:
            assert param.required, option.param
        elif option.spec.parse is not None:  # nothing given: the flow's own default
            assert param.default is None and not param.required
        else:
            assert param.default == flow_default and not param.required, option.param
        _assert_limits(param, _schema(spec.flow, option.param))


def _assert_limits(param: Any, schema: dict[str, Any]) -> None:
    integer = schema.get("type") == "integer"
    low = schema.get("minimum")
    if "exclusiveMinimum" in schema:
        low = schema["exclusiveMinimum"] + 1 if integer else None
        if not integer:  # an open bound typer cannot state: the help says it
            assert f"(x > {schema['exclusiveMinimum']:g})" in param.help
    high = schema.get("maximum")
    if "exclusiveMaximum" in schema:
        high = schema["exclusiveMaximum"] - 1 if integer else None
    assert (getattr(param, "min", None), getattr(param, "max", None)) == (low, high), param.name
    choices = param.type_descriptor.choices
    if "enum" in schema and len(schema["enum"]) <= 12:
        assert list(choices) == schema["enum"], param.name
    else:
        assert not param.type_descriptor.is_choice, param.name


def test_the_defaults_are_the_flows_for_the_documented_example():
    # The aggregation CLI once restated these by hand (168 and 60).
    from flows.hourly_aggregation import DEFAULT_LATENESS_MINUTES, DEFAULT_MAX_CATCHUP_HOURS

    params = {p.name: p for p in load(load_group("hourly").commands["aggregate"]).params}
    assert params["max_catchup_hours"].default == DEFAULT_MAX_CATCHUP_HOURS
    assert params["lateness_minutes"].default == DEFAULT_LATENESS_MINUTES
    assert (params["max_catchup_hours"].min, params["max_catchup_hours"].max) == (1, 24 * 92)
    assert params["max_catchup_hours"].help.startswith("An incremental run covers")


def test_no_hand_written_command_runs_a_flow():
    generated = {(id(c.app), c.name) for c in FLOW_COMMANDS}
    apps = [("", cli.app), *((g.name, g.typer_instance) for g in cli.app.registered_groups),
            *((name, _typer(name)) for name in GROUPS)]
    for group, app in apps:
        for info in app.registered_commands:
            name = info.name or info.callback.__name__.replace("_", "-")
            if (id(app), name) in generated:
                continue
            if (group, name) in NO_PARAMETERS:
                from demo_steps.flow import demo
                assert not inspect.signature(demo.fn).parameters
                continue
            assert not _references_flows(info.callback), (
                f"`shopfloor {group} {name}` runs a flow with hand-written options: "
                "use deployments.flowcli.flow_command")


def _references_flows(fn: Any) -> bool:
    """Whether ``fn``'s code names a flow module or a flow (imports inside it included)."""
    from prefect import Flow

    codes, names = [fn.__code__], set()
    while codes:
        code = codes.pop()
        names |= set(code.co_names)
        codes += [c for c in code.co_consts if inspect.iscode(c)]
    if any(n == "flows" or n.startswith("flows.") for n in names):
        return True
    values = [fn.__globals__.get(n) for n in names]
    return any(isinstance(v, Flow) or getattr(v, "__name__", "").startswith("flows.")
               for v in values)


def _run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["shopfloor", *args])
    with pytest.raises(SystemExit) as stop:
        main()
    out, err = capsys.readouterr()
    return stop.value.code, out, err


@pytest.mark.parametrize("args, line", [
    (["hourly", "aggregate", "--max-catchup-hours", "0"],
     "error: Invalid value for '--max-catchup-hours': Input should be greater than or equal "
     "to 1"),
    (["lake", "merge", "--min-files", "1"],
     "error: Invalid value for '--min-files': Input should be greater than or equal to 2"),
    (["spark", "extract", "--layout", "wide"],
     "error: Invalid value for '--layout': 'wide' is not one of 'date', 'tag'."),
    (["hourly", "backfill", "2024-01-01", "not-a-day"],
     "error: Invalid value for 'END_DATE': Input should be a valid date or datetime, input is "
     "too short"),
    (["compaction", "run", "--ram-limit", "10XB"],
     "error: ram_limit: '10XB' is not a memory size: use e.g. '1GB', '512MB' or '10GiB'"),
    (["hourly", "aggregate", "--bogus"],
     "error: No such option: --bogus (try 'shopfloor hourly aggregate --help')"),
])
def test_a_bad_option_value_is_one_error_line_and_exit_code_2(monkeypatch, capsys, args,
                                                                  line):
    code, out, err = _run_main(monkeypatch, capsys, *args)
    assert (code, out, err.splitlines()) == (2, "", [line])


def _modules_after(*args: str) -> tuple[str, set[str]]:
    """What ``shopfloor ARGS`` printed, and which of flows/prefect it imported."""
    code = (f"import sys; from deployments.cli import main; sys.argv = ['shopfloor', *{args!r}]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'flows', 'prefect'}))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120, check=True, env={**os.environ, "COLUMNS": "200"})
    *printed, modules = res.stdout.splitlines()
    return "\n".join(printed), set(eval(modules))  # noqa: S307 - a list of names we printed


def test_the_help_imports_a_flow_only_for_its_own_command():
    # What keeps `shopfloor --help` fast (about 0.15 s, against about 2 s with every flow
    # imported) and spares a command the flows of the other commands of its group.
    printed, modules = _modules_after("--help")
    assert modules == set() and all(f" {name} " in printed for name in GROUPS)
    printed, modules = _modules_after("hourly", "--help")
    assert "flows" not in modules and "load-locations" in printed and "aggregate" in printed
    printed, modules = _modules_after("hourly", "load-locations", "--help")
    assert "flows" not in modules and "--no-source" in printed
    printed, modules = _modules_after("hourly", "aggregate", "--help")
    assert "flows" in modules and "--max-catchup-hours" in printed


def test_a_loaded_group_has_its_listed_help():
    for name, (_, text) in GROUPS.items():
        assert load_group(name).help == text
