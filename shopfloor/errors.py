"""The three kinds of error shopfloor raises, by what the reader should do about them.

- :class:`UserError`: fix the input and run again (a bad parameter, an unknown block, a
  malformed URL or map). The CLI prints one ``error:`` line and exits 2, before a flow
  run exists where it can; a task never retries it.
- :class:`DataIntegrityError`: stop, going on would write wrong data (a claim taken over,
  counts that do not add up, a manifest that names foreign keys). The flow run ends
  Failed with the cause; a task never retries it; the CLI exits 3.
- :class:`ShopfloorError` itself: a clear operational failure (an unreachable database,
  a bucket that refuses us, every object quarantined): one line, exit 1; a task may
  retry it.
"""


class ShopfloorError(Exception):
    """A clear, one-line error; its subclasses say whose it is to act (see the module)."""


class UserError(ShopfloorError):
    """The user can fix this: a bad parameter, an unknown block, malformed input."""


class DataIntegrityError(ShopfloorError):
    """Stop: continuing would lose or double data (fencing, counts, foreign manifests)."""


def retryable(exc: BaseException) -> bool:
    """Whether a task may retry after ``exc``: not for user errors (the same input fails
    the same way) nor for integrity stops (a retry would only hide them)."""
    return not isinstance(exc, UserError | DataIntegrityError)


def first_line(exc: BaseException, limit: int = 500) -> str:
    """The first line of an exception's message (or its type name), at most ``limit``
    characters: what a summary row, a log line or a registry's error column shows."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]
