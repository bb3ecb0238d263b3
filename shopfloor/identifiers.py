"""Strict checks for SQL identifiers that cannot be bound parameters (schema, table names)."""

import re

from shopfloor.errors import UserError

# Letters, digits and underscores, not starting with a digit; 63 is PostgreSQL's limit.
IDENTIFIER_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def check_identifier(name: str, what: str = "identifier") -> str:
    """Return ``name`` unchanged if it is a safe SQL identifier, else raise.

    Args:
        name: the schema or table name to check.
        what: what the name is, for the error message (e.g. "schema").
    """
    if not isinstance(name, str) or not IDENTIFIER_PATTERN.fullmatch(name):
        raise UserError(
            f"invalid {what} {name!r}: use letters, digits and underscores only "
            "(not starting with a digit, at most 63 characters)"
        )
    return name


def check_optional_identifier(name: str | None, what: str = "identifier") -> str | None:
    """Like :func:`check_identifier`, but ``None`` and ``""`` mean "no name" and give ``None``."""
    if name is None or name == "":
        return None
    return check_identifier(name, what)


# A run token in object names: a flow run id, a uuid, or either with a suffix.
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_token(token: str, what: str = "token") -> str:
    """Return ``token`` if it is safe inside an object name (letters, digits, ``_``, ``-``,
    at most 64 characters), else raise: tokens name staging folders, manifests and files."""
    if not isinstance(token, str) or not TOKEN_PATTERN.fullmatch(token):
        raise UserError(f"invalid {what} {token!r}")
    return token
