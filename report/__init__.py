"""The report engine: analyses, cache, context and rendering; it knows nothing about MNIST."""

from report.analysis import Analysis
from report.context import ComputeContext, Context, DrawContext

__all__ = ["Analysis", "ComputeContext", "Context", "DrawContext"]
