"""The article's analyses, in the order the article shows them."""

from analyses import dataset

# The article's order. Each module declares ANALYSIS and run(ctx); see report/analysis.py.
ANALYSES = [
    dataset,
]
