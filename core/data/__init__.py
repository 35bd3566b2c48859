"""Datasets: streaming reading, validation, exact token counts, statistics, splitting and leakage checks."""
