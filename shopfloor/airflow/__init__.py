"""Moving in from Airflow: its connections read as Airflow writes them, mapped to blocks.

Plain Python (no prefect, no Airflow): ``blocks/airflow_import.py`` saves the blocks.
"""
