"""Errors a user can act on: the CLI prints their message as one line, no traceback."""


class ShopfloorError(Exception):
    """A clear, actionable error (bad parameter, unknown block, unreachable database)."""
