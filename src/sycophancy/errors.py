"""One exception type for bad input that the entry points print as a short paragraph."""


class UserError(Exception):
    """A problem with the user's input or configuration, explained in one paragraph with its fix."""
