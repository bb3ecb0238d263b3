"""The embedded demo behind ``shopfloor demo``: its flow (``demo_steps/flow.py``) and steps.

Each step runs one part of the suite on embedded defaults (a simulated PLC, SQLite, local
folders, local Spark) and returns the lines it prints. The steps are not flows: they call
the flows as plain Python functions, so this package sits above ``flows/`` and imports it
(and the demo flow lives here, not in ``flows/``, so no import points up).

(Not named ``demo``: the package would then share its name with the flow.)
"""
