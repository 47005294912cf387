"""Measure and mitigate sycophancy in language models."""

__version__ = "0.1.0"
