"""Every ``shopfloor ...`` command line in README.md and docs/ names commands and options
that exist: the commands generated from the flows keep the names the docs use."""

import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from deployments import cli
from deployments.cli import GROUPS, load_group
from deployments.flowcli import load

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _invocations() -> list[tuple[str, str]]:
    """``(file:line, command line)`` for each line of a code block that runs shopfloor."""
    found = []
    for path in DOCS:
        lines, in_code = path.read_text().splitlines(), False
        for number, line in enumerate(lines, start=1):
            if line.lstrip().startswith("```"):
                in_code = not in_code
                continue
            text = re.sub(r"^(\.venv/bin/|\$ )", "", line.strip())
            if in_code and text.startswith("shopfloor "):
                while text.endswith("\\") and number < len(lines):
                    text, number = text[:-1] + " " + lines[number].strip(), number + 1
                found.append((f"{path.relative_to(ROOT)}:{number}", text))
    return found


INVOCATIONS = _invocations()


def _root() -> Any:
    import typer

    group = typer.main.get_group(cli.app)
    for name in GROUPS:
        group.commands[name] = load_group(name)
    return group


def _tokens(line: str) -> list[str]:
    words = shlex.split(line.split("  #")[0].replace("[", " ").replace("]", " "))
    return [w for w in words[1:] if w not in ("...", "|")]


def _commands(group: Any, tokens: list[str]) -> tuple[list[Any], list[str]]:
    """The commands a line names (``a|b|c`` names three) and the words after them."""
    if not tokens or not hasattr(group, "commands") or tokens[0].startswith("-"):
        return [group], tokens
    names = tokens[0].split("|")
    assert all(n in group.commands for n in names), f"no command {tokens[0]!r}"
    found: list[Any] = []
    rest: list[str] = []
    for name in names:
        commands, rest = _commands(load(group.commands[name]), tokens[1:])
        found += commands
    return found, rest


@pytest.mark.parametrize("where, line", INVOCATIONS, ids=[w for w, _ in INVOCATIONS])
def test_each_documented_command_line_names_existing_commands_and_options(where, line):
    commands, rest = _commands(_root(), _tokens(line))
    options = {o.split("=")[0] for word in rest if word.startswith("--")
               for o in word.split("|")}
    for command in commands:
        known = {"--help", *(o for p in command.params for o in (*p.opts, *p.secondary_opts))}
        assert options <= known, f"{where}: {sorted(options - known)} not options of {line!r}"


def test_the_docs_show_the_flow_commands():
    assert len(INVOCATIONS) > 40
    assert any(line.startswith("shopfloor hourly aggregate --") for _, line in INVOCATIONS)
