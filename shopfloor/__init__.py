"""shopfloor: the domain layer (plain Python, never imports prefect)."""

__version__ = "0.1.0"
