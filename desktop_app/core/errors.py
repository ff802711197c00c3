"""Errors that carry a message meant for the user (shown in the GUI, one line in the CLI)."""


class AtelierError(Exception):
    """An error whose message is clear enough to show to a user as is."""


class ModelFormatError(AtelierError):
    """A model file is missing, malformed, truncated or of a refused format."""


class OfflineError(AtelierError):
    """A network call was asked for while the offline switch is on."""


class Cancelled(AtelierError):
    """Work was cancelled through its CancelToken."""

    def __init__(self, message: str = "Cancelled") -> None:
        super().__init__(message)
