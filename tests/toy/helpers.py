"""A project module the toy `alpha` imports: editing it must invalidate alpha and its dependents."""


def double(x: float) -> float:
    """Twice x."""
    return 2 * x
