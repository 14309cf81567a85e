"""sluice — a self-hosted event pipeline built around destination insert functions."""

__version__ = "0.1.0"
