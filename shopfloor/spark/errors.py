"""Spark errors as one readable line.

A failure inside the JVM reaches Python as py4j's ``Py4JJavaError``, whose first line
only says which call failed (``An error occurred while calling o56.jdbc.``); the cause a
person can act on (``java.lang.ClassNotFoundException: org.postgresql.Driver``) is on a
later line. This module needs no Spark: it reads the message text.
"""

from shopfloor.errors import first_line

_PY4J_HEAD = "An error occurred while calling"


def error_line(exc: BaseException, limit: int = 500) -> str:
    """The first line of ``exc``, with the Java root cause appended for a py4j error."""
    head = first_line(exc, limit)
    if not head.startswith(_PY4J_HEAD):
        return head
    causes = [ln.strip().removeprefix(": ").removeprefix("Caused by: ")
              for ln in str(exc).splitlines()[1:]
              if ln.startswith(": ") or ln.startswith("Caused by: ")]
    return f"{head} {causes[-1]}"[:limit] if causes else head
