"""Temporal workflows. Deterministic code only: no I/O, no wall clock, no httpx."""
