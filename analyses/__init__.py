"""The article's analyses, in the order the article shows them."""

from analyses import (classifiers, dataset, dynamics, embeddings, gan, hidden_layers, optimizers,
                      transfer)

# The article's order. Each module declares ANALYSIS and run(ctx); see report/analysis.py.
ANALYSES = [
    dataset,
    embeddings,
    classifiers,
    optimizers,
    dynamics,
    hidden_layers,
    gan,
    transfer,
]
