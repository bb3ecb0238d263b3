"""Commands that run a flow, generated from the flow's signature.

A flow's parameters are its public contract: their defaults, their limits (pydantic
``Field(ge=..., le=...)``) and their help (``Field(description=...)`` or the docstring's
``Args:``) are written once, in the flow. :func:`flow_command` turns them into the
options of a ``shopfloor`` command, so the command line cannot drift from what a
deployment run or the UI form accepts.

A generated command parses its options (a value outside a limit is refused by the
option itself), runs the command's own ``check`` (the flow's rules across fields), checks
every value against the flow's types as the Prefect server does
(:func:`~shopfloor.params.check_typed`), then calls the command's body with the flow's
keyword arguments. Options that are not flow parameters (``--until-done``) are the
body's own keyword parameters, declared there as plain typer options.

The flow is imported only when its command runs or shows its help: importing a flow
takes about a second, which listing a group's commands or running another command of the
group does not pay.
"""

import importlib
import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import annotated_types
import typer
from pydantic.fields import FieldInfo
from typer.core import TyperCommand

# A Literal with more values than this (the IANA zones) is plain text on the command
# line: listing them would bury the help; the flow's own check names a bad value.
MAX_CHOICES = 12
_LEAF_TYPES = (bool, int, float, str, date, datetime)

Check = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class As:
    """How one flow parameter appears on the command line, when not as ``--<name>``.

    Attributes:
        option: the option's name (``--master`` for ``spark_master``).
        argument: positional instead of an option (in the flow's parameter order).
        parse: for a value the command line cannot type (a dict): takes the repeated
            option's texts and returns the flow's value; nothing given keeps the flow's
            default.
        help: the option's help when its form differs from the flow's (``KEY=VALUE``).
    """

    option: str | None = None
    argument: bool = False
    parse: Callable[[list[str]], Any] | None = None
    help: str | None = None


@dataclass(frozen=True)
class FlowOption:
    """One generated option: the flow parameter it sets, its default and limits as read
    from the flow (``default`` is ``inspect.Parameter.empty`` for a required one)."""

    param: str
    default: Any
    limits: dict[str, float]
    spec: As
    is_list: bool


@dataclass(eq=False)
class FlowCommand:
    """A command registered by :func:`flow_command`; built from its flow when first used.

    Attributes:
        flow_ref: ``module:attribute`` of the flow.
        check: the flow's rules across fields: a callable of the flow's keyword
            arguments, or ``module:function`` called with the arguments it names.
    """

    app: typer.Typer
    name: str
    flow_ref: str
    body: Callable[..., Any]
    specs: dict[str, As] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()
    check: Check | str | None = None

    @cached_property
    def flow(self) -> Any:
        return _resolve(self.flow_ref)

    @cached_property
    def options(self) -> tuple[FlowOption, ...]:
        fn = getattr(self.flow, "fn", self.flow)
        unknown = (set(self.specs) | set(self.skipped)) - set(inspect.signature(fn).parameters)
        if unknown:
            raise TypeError(f"{self.name}: {sorted(unknown)} are not parameters of {fn.__name__}")
        return tuple(_flow_options(fn, self.specs, self.skipped))

    @cached_property
    def extras(self) -> tuple[inspect.Parameter, ...]:
        """The body's own options (after its first parameter, the flow's arguments)."""
        return tuple(inspect.signature(self.body, eval_str=True).parameters.values())[1:]

    @cached_property
    def command(self) -> Any:
        """The click command, its options read from the flow (imported now)."""
        clash = {p.name for p in self.extras} & {o.param for o in self.options}
        if clash:
            raise TypeError(f"{self.name}: extra options {sorted(clash)} are flow parameters")
        if isinstance(self.check, str):
            _resolve(self.check)  # a moved or renamed check fails here, not in a user's run

        def command(**values: Any) -> Any:
            return self.run(values)

        command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [*_signature(self.flow, self.options),
             *(p.replace(kind=p.KEYWORD_ONLY) for p in self.extras)])
        command.__name__ = self.body.__name__
        built = typer.Typer()
        built.command(self.name, help=self.body.__doc__)(command)
        return typer.main.get_group(built).commands[self.name]

    def run(self, values: dict[str, Any]) -> Any:
        """Check what typer parsed as the flow would, then call the body."""
        from shopfloor.params import check_typed

        extra = {p.name: values.pop(p.name) for p in self.extras}
        kwargs = {o.param: _flow_value(o, values[o.param]) for o in self.options}
        if isinstance(self.check, str):
            check = _resolve(self.check)
            check(**{k: kwargs[k] for k in inspect.signature(check).parameters if k in kwargs})
        elif self.check is not None:
            self.check(kwargs)
        check_typed(self.flow, **kwargs)
        return self.body(kwargs, **extra)


FLOW_COMMANDS: list[FlowCommand] = []


class _LazyFlowCommand(TyperCommand):
    """What a group holds for a flow command: its name and help for the group's listing;
    parsing its arguments (or its ``--help``) builds the real command from the flow."""

    flow_command: FlowCommand

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None,
                     **extra: Any) -> Any:
        return self.flow_command.command.make_context(info_name, args, parent=parent, **extra)


def flow_command(app: typer.Typer, flow: str, *, name: str, skip: Sequence[str] = (),
                 params: dict[str, As] | None = None, check: Check | str | None = None,
                 ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``shopfloor <app> <name>``, whose options are the flow's parameters.

    The decorated body is called as ``body(flow_kwargs, **extra_options)`` after the
    checks; its keyword parameters after the first are extra, non-flow options, declared
    as usual (``Annotated[bool, typer.Option(help=...)] = False``). Its docstring is the
    command's help. The body imports the flow it calls (a test may patch it).

    Args:
        app: the typer group the command belongs to.
        flow: ``module:attribute`` of a Prefect flow (or a plain function) whose
            signature the options follow; imported when the command is used.
        name: the command's name.
        skip: flow parameters the command does not offer (the flow's default applies).
        params: parameters shown differently (:class:`As`), by flow parameter name.
        check: the flow's rules across fields, run on the flow's keyword arguments before
            the type check (so its messages, e.g. an unknown zone, come first): a
            callable of the keyword arguments, or ``module:function`` called with the
            arguments its signature names.
    """

    def register(body: Callable[..., Any]) -> Callable[..., Any]:
        spec = FlowCommand(app, name, flow, body, dict(params or {}), tuple(skip), check)
        lazy = type(f"Lazy_{body.__name__}", (_LazyFlowCommand,), {"flow_command": spec})

        def listed() -> None:  # the placeholder: typer only reads its name and help
            raise AssertionError("a flow command runs through its built command")

        app.command(name, cls=lazy, help=body.__doc__)(listed)
        FLOW_COMMANDS.append(spec)
        return body

    return register


def load(command: Any) -> Any:
    """The real click command behind a group's entry (a flow command built now)."""
    spec = getattr(command, "flow_command", None)
    return spec.command if spec is not None else command


def _resolve(ref: str) -> Any:
    module, attribute = ref.split(":")
    return getattr(importlib.import_module(module), attribute)


def _flow_options(fn: Callable[..., Any], specs: dict[str, As],
                  skip: Sequence[str]) -> list[FlowOption]:
    hints = get_type_hints(fn, include_extras=True)
    options = []
    for p in inspect.signature(fn).parameters.values():
        if p.name in skip:
            continue
        spec = specs.get(p.name, As())
        base, metadata, _ = _unwrap(hints[p.name])
        is_list = get_origin(base) is list or spec.parse is not None
        if get_origin(base) is list:
            metadata = _unwrap(get_args(base)[0])[1]  # an item's limits
        options.append(FlowOption(p.name, p.default, _limits(metadata), spec, is_list))
    return options


def _unwrap(annotation: Any) -> tuple[Any, list[Any], bool]:
    """``(base type, Annotated metadata, optional)`` of ``Annotated[X, ...] | None``."""
    metadata: list[Any] = []
    optional = False
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            metadata += annotation.__metadata__
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType) and type(None) in get_args(annotation):
            rest = [a for a in get_args(annotation) if a is not type(None)]
            if len(rest) != 1:
                raise TypeError(f"no command-line form for {annotation!r}")
            annotation, optional = rest[0], True
        else:
            return annotation, metadata, optional


def _limits(metadata: list[Any]) -> dict[str, float]:
    """``{"ge": 1, "le": 2208}`` from ``Field(...)`` and annotated-types constraints."""
    limits: dict[str, float] = {}
    for item in metadata:
        for constraint in (item.metadata if isinstance(item, FieldInfo) else [item]):
            if isinstance(constraint, annotated_types.Interval | annotated_types.Ge
                          | annotated_types.Gt | annotated_types.Le | annotated_types.Lt):
                limits |= {k: getattr(constraint, k) for k in ("ge", "gt", "le", "lt")
                           if getattr(constraint, k, None) is not None}
    return limits


def _description(metadata: list[Any]) -> str | None:
    return next((m.description for m in metadata
                 if isinstance(m, FieldInfo) and m.description), None)


def _signature(flow: Any, options: list[FlowOption]) -> list[inspect.Parameter]:
    fn = getattr(flow, "fn", flow)
    hints = get_type_hints(fn, include_extras=True)
    docs = _docstring_help(flow)
    names = {o.param: _option_name(o) for o in options}
    return [inspect.Parameter(o.param, inspect.Parameter.KEYWORD_ONLY,
                              default=None if o.spec.parse else o.default,
                              annotation=_annotation(o, hints[o.param], docs, names))
            for o in options]


def _option_name(option: FlowOption) -> str:
    if option.spec.argument:
        return option.param.upper()
    return option.spec.option or "--" + option.param.replace("_", "-")


def _annotation(option: FlowOption, hint: Any, docs: dict[str, str],
                names: dict[str, str]) -> Any:
    """``Annotated[<type the command line parses>, typer.Option(...)]`` for one option."""
    base, metadata, _ = _unwrap(hint)
    text = option.spec.help or _description(metadata) or docs.get(option.param, "")
    help_text = _help_text(text, names, option.limits)
    if option.spec.parse is not None:
        cli_type: Any = list[str]
    elif get_origin(base) is list:
        cli_type = list[_leaf(_unwrap(get_args(base)[0])[0], option.param)]
    else:
        cli_type = _leaf(base, option.param)
    bounds = _bounds(option.limits, cli_type)
    if option.spec.argument:
        return Annotated[cli_type, typer.Argument(help=help_text, show_default=True,
                                                  metavar=option.param.upper(), **bounds)]
    flag = _option_name(option)
    decls = (f"{flag}/--no-{flag[2:]}",) if cli_type is bool else (flag,)
    return Annotated[cli_type, typer.Option(*decls, help=help_text, **bounds)]


def _leaf(base: Any, name: str) -> Any:
    if get_origin(base) is Literal:
        return base if len(get_args(base)) <= MAX_CHOICES else str
    if base in _LEAF_TYPES:
        return base
    raise TypeError(f"{name}: no command-line form for {base!r}; give As(parse=...)")


def _bounds(limits: dict[str, float], cli_type: Any) -> dict[str, float]:
    """typer's ``min``/``max`` (inclusive): ``ge``/``le``, and ``gt``/``lt`` of an int.
    An open float bound stays with the type check (and the help says it)."""
    item = get_args(cli_type)[0] if get_origin(cli_type) is list else cli_type
    bounds = {"min": limits.get("ge"), "max": limits.get("le")}
    if item is int:
        bounds["min"] = limits["gt"] + 1 if "gt" in limits else bounds["min"]
        bounds["max"] = limits["lt"] - 1 if "lt" in limits else bounds["max"]
    if item not in (int, float):
        return {}
    return {k: v for k, v in bounds.items() if v is not None}


def _help_text(text: str, names: dict[str, str], limits: dict[str, float]) -> str:
    """The docstring's words for the command line: its first sentence (the rest is in
    the flow's docs), ````name```` of a parameter as its option, capitalised; an open
    bound the range cannot show."""
    text = re.split(r"(?<=\.)\s+(?=[A-Z])", " ".join(text.split()), maxsplit=1)[0]
    text = re.sub(r"``([^`]+)``", lambda m: names.get(m.group(1), m.group(1)), text)
    # A bare parameter name (``span_seconds``) is the option too; plain words are not.
    text = re.sub(r"\b[a-z]+(?:_[a-z]+)+\b", lambda m: names.get(m[0], m[0]), text)
    if re.match(r"[a-z]+(?=[\s,:;)]|$)", text):  # not a value such as local[*]
        text = text[:1].upper() + text[1:]
    open_bounds = [f"(x {op} {limits[k]:g})" for k, op in (("gt", ">"), ("lt", "<"))
                   if k in limits]
    return " ".join([text, *open_bounds]).strip()


def _docstring_help(flow: Any) -> dict[str, str]:
    """The ``Args:`` descriptions: Prefect parsed them into the flow's parameter schema."""
    schema = getattr(flow, "parameters", None)
    properties = getattr(schema, "properties", None) or {}
    return {k: v.get("description", "") for k, v in properties.items()}


def _flow_value(option: FlowOption, value: Any) -> Any:
    """What the flow gets for what typer parsed: lists as lists, a repeated text through
    its ``parse``, nothing given as the flow's default."""
    if option.spec.parse is not None:
        return option.spec.parse(list(value)) if value else option.default
    if option.is_list and not value and option.default is None:
        return None
    return list(value) if isinstance(value, tuple | list) else value
