"""The one error type users see: a single line naming the problem and the fix."""


class ReleaseError(Exception):
    """A problem the user can act on; the CLI prints its message alone, without a traceback."""
