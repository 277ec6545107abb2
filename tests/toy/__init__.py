"""Toy analyses for the engine tests: tiny work, no MNIST, behaviour switched by config or env.

The tests copy this package into a temporary project root (so that editing a toy's source to
check cache invalidation never touches the repository) and import it from there.
"""
