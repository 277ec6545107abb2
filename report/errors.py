"""Errors that are the user's to fix: the build prints their message alone, without a traceback."""


class UserError(RuntimeError):
    """A mistake in the build's inputs (a missing data file, a bad option); says what to do."""
