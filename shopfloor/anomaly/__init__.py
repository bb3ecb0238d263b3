"""Anomaly detection on hourly rows beyond static thresholds (docs/anomalies.md).

``grid`` lays hourly rows on a local-hour grid, ``detectors`` finds deviations, spikes,
flatlines and gaps on it, ``findings`` turns them into :class:`Finding` objects, and
``store`` reads hourly rows and writes findings to the ``anomaly`` table.
"""
