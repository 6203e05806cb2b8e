"""Typed exceptions. The CLI and the app turn `UserInputError` into a one-line message."""


class FoleyError(Exception):
    """Base class of every error the studio raises on purpose."""


class UserInputError(FoleyError):
    """Bad input from the user (missing file, not a video, unreadable CoT...); the message says what to do."""
