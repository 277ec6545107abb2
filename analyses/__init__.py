"""The article's analyses, in the order the article shows them."""

from analyses import dataset, embeddings
from analyses import classifiers
from analyses import optimizers
from analyses import dynamics, hidden_layers

# The article's order. Each module declares ANALYSIS and run(ctx); see report/analysis.py.
ANALYSES = [
    dataset,
    embeddings,
    classifiers,
    optimizers,
    dynamics,
    hidden_layers,
]
