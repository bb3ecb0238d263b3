"""Thin @task wrappers around shopfloor/: retries, logging, caching; no business logic.

One rule for task arguments:

- **Block names at the task boundary.** A task that reads or writes a database or a
  storage location takes the *name* of its block (``source_db: str``, ``lake: str``)
  and resolves it itself through :mod:`tasks.runtime` (one engine per database and its
  connect_args, and each block is read once per flow run, so resolving in every task
  costs no new connection pool). Names are
  small, JSON-serialisable, show readably in the UI and in task-run parameters, and
  make cache keys and retries meaningful; a resolved engine or credential object would
  carry secrets into task inputs.
- **Live sessions as objects.** What cannot be re-created per task without real cost
  or cannot be named (a running Spark session, an open DuckDB connection) travels as
  an object; plain value objects built from parameters (a window, a claim, a plan)
  travel as themselves.

Flows resolve a block once only to fail fast on a bad name (``check_blocks``), never
to pass the resolved object down.
"""
