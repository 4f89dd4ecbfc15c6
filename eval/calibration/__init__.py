"""Calibration of the metrics against reference implementations; records in <metric>.json."""
