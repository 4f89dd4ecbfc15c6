"""Headless evaluation: metrics, calibration records and benchmarks for restored faces."""
