"""User-facing errors."""


class VmatteError(Exception):
    """A user-facing error: one line saying what is wrong and the fix."""
