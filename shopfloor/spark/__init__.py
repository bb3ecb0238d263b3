"""PySpark parts of the historian extraction: session, JDBC source, transform, writers.

Plain PySpark (no prefect); the Prefect tasks in ``tasks/spark_extraction.py`` call them.
"""
