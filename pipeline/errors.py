"""Errors a user can cause and fix."""


class UsageError(Exception):
    """A problem with the user's input: printed as one sentence, exit code 2, no traceback."""
