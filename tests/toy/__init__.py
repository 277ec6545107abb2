"""Toy analyses for the engine tests: tiny work, no MNIST, behaviour switched by config or env.

The tests copy this package into a temporary project root (so that editing a toy's source to
check cache invalidation never touches the repository) and import it from there.
"""


def load_data(device: object) -> list[int]:
    """The toy dataset (a module-level function, so that worker processes can receive it)."""
    return [1, 2, 3]


def describe_data(dataset: list[int] | None) -> dict:
    """The toy dataset's provenance: whether this build loaded it."""
    return {"source": "read from the toy files" if dataset is not None else "not loaded"}
