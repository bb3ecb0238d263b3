"""Database URLs: parsed and checked before anything is saved or connected, credentials
kept out of the query string, and a form that is safe to show.

A URL may carry its password in the query string (``...?password=...``, which psycopg2
and pymysql accept). Left there it would be stored in a connector block's ordinary
``query`` field and printed wherever the URL is shown, so :func:`parse_database_url`
moves it into the URL's password (a secret field once in a block) and refuses other
credential-like query keys it cannot place.
"""

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from shopfloor.errors import UserError, first_line

# Query keys that are the password itself, under the names drivers accept.
PASSWORD_KEYS = frozenset({"password", "passwd", "pwd"})
# Query keys that hold other secrets: refused, they have no secret field to go to.
SECRET_KEYS = frozenset({"sslpassword", "ssl_password", "secret", "token", "access_token",
                         "auth_token", "api_key", "apikey", "client_secret", "sas_token"})
MASK = "***"


def parse_database_url(url: str) -> URL:
    """``url`` parsed, its dialect and driver loaded, a query-string password moved into
    the password; one clear :class:`ShopfloorError` line for anything wrong (the URL
    itself is never echoed, it may hold a secret)."""
    try:
        u = make_url(url)
        u.port  # noqa: B018 - a port like ':abc' fails only when read
    except (ArgumentError, ValueError) as exc:
        raise UserError(f"invalid database URL: {_reason(exc)}") from None
    try:
        u.get_dialect()
    except NoSuchModuleError:
        raise UserError(
            f"unknown database driver {u.drivername!r} in the URL: use e.g. postgresql+psycopg2, "
            "mysql+pymysql, mssql+pymssql or sqlite") from None
    return _password_out_of_query(u)


def _reason(exc: Exception) -> str:
    text = first_line(exc, limit=200)
    # SQLAlchemy quotes the whole URL in some messages: keep only what names the problem.
    if "Could not parse" in text:
        return "expected driver://user:password@host:port/database"
    if "invalid literal for int()" in text:
        return "the port must be a number"
    return text


def _password_out_of_query(u: URL) -> URL:
    keys = {k.lower(): k for k in u.query}
    secrets = sorted(k for k in keys if k in SECRET_KEYS)
    if secrets:
        raise UserError(
            f"database URL carries a secret in its query string ({', '.join(secrets)}): "
            "shopfloor cannot keep it secret there; configure it on the server or driver")
    found = [keys[k] for k in keys if k in PASSWORD_KEYS]
    if not found:
        return u
    values = {_one(u.query[k]) for k in found}
    if len(values) > 1 or (u.password is not None and u.password not in values):
        raise UserError("database URL gives two different passwords "
                             "(one in the query string)")
    query = {k: v for k, v in u.query.items() if k not in found}
    return u.set(password=values.pop(), query=query)


def _one(value: str | tuple[str, ...]) -> str:
    return value if isinstance(value, str) else value[0]


def display_url(url: str | URL) -> str:
    """The URL as it may be shown: password hidden, every query value masked."""
    u = make_url(url) if isinstance(url, str) else url
    shown = u.set(query={}).render_as_string(hide_password=True)
    return shown + ("?" + "&".join(f"{k}={MASK}" for k in u.query) if u.query else "")
