"""The article's analyses, in the order the article shows them."""

from analyses import (classifiers, dataset, dynamics, embeddings, gan, hidden_layers, optimizers,
                      transfer)

# The article's order. Each module declares ANALYSIS, compute(ctx) and draw(ctx); see
# report/analysis.py.
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

# The project's modules that only present (beside the engine's own: recording, rendering, the
# comparison rule): outside every compute key, and no compute stage may reach them.
PRESENTATION = ("digits.plots",)
