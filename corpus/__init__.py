"""Ingestion, cleaning, dedup and the build pipeline of refinery."""

__version__ = "0.1.0"
