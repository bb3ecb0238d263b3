"""The steps of the embedded demo behind ``shopfloor demo`` (the flow is ``flows/demo.py``).

Each step runs one part of the suite on embedded defaults (a simulated PLC, SQLite, local
folders, local Spark) and returns the lines it prints. They are not flows: they call the
flows as plain Python functions, so this package sits beside ``flows/`` and imports it.

(Not named ``demo``: Prefect loads the entrypoint ``flows/demo.py`` as a module named
``demo``, which would hide a package of that name.)
"""
