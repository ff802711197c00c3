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


class AlreadyInstalled(AtelierError):
    """The model is already in the library (same file contents); ``record`` is that one."""

    def __init__(self, record, what: str = "") -> None:
        self.record = record
        super().__init__(f"{what or 'This model'} is already in the library as {record.display_name} "
                         f"({record.id}, same contents): nothing was added.")


class StorageError(AtelierError):
    """A file could not be written: read-only folder, full disk, quota, permissions."""


# errno values that mean "this folder cannot take the write", never worth a retry
STORAGE_ERRNOS = frozenset({28, 30, 122, 13, 1})  # ENOSPC, EROFS, EDQUOT, EACCES, EPERM


def is_storage_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS


def storage_error(exc: OSError, path, what: str = "") -> StorageError:
    """One plain sentence for a failed write: what, where, why, and what to do."""
    why = {28: "the disk is full", 30: "the folder is read-only", 122: "the disk quota is used up",
           13: "permission is denied", 1: "permission is denied"}.get(exc.errno, exc.strerror or str(exc))
    fix = ("Free some space" if exc.errno in (28, 122) else
           "Make the folder writable, or set ATELIER_HOME to a writable folder")
    return StorageError(f"Cannot save {what or path}: {why} ({path}). {fix}.")
