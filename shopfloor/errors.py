"""Errors a user can act on: the CLI prints their message as one line, no traceback."""


class ShopfloorError(Exception):
    """A clear, actionable error (bad parameter, unknown block, unreachable database)."""


def first_line(exc: BaseException, limit: int = 500) -> str:
    """The first line of an exception's message (or its type name), at most ``limit``
    characters: what a summary row, a log line or a registry's error column shows."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]
