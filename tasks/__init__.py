"""Thin @task wrappers around shopfloor/: retries, logging, caching; no business logic."""
