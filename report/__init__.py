"""The report engine: analyses, cache, context and rendering; it knows nothing about MNIST."""

from report.analysis import Analysis
from report.context import Context

__all__ = ["Analysis", "Context"]
