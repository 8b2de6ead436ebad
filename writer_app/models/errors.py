"""Everything that can go wrong with models, as exceptions whose text a writer can read.

Each class is one concern, so the UI can pick an action per class (retry, free space,
log in, pick another file) and show str(error) as the explanation. `transient` tells the
downloader whether waiting and trying again might help.
"""

from __future__ import annotations


class ModelsError(Exception):
    """Base class: str(error) is a complete sentence meant for the writer."""

    transient = False


class HubError(ModelsError):
    """The model hub could not give us what we asked for."""


class HubUnreachable(HubError):
    """No connection, a dropped connection, a timeout, or offline mode."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


class HubNotFound(HubError):
    """The repository, revision or file does not exist (HTTP 404)."""


class HubUnauthorized(HubError):
    """The hub wants a (different) login token, or the repository is gated (HTTP 401/403)."""


class HubServerError(HubError):
    """The hub answered with a server error (5xx) or asked us to slow down (429)."""

    transient = True

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class DiskFull(ModelsError):
    """Not enough free space for the file (checked up front, or ENOSPC while writing)."""


class ChecksumMismatch(ModelsError):
    """The downloaded bytes are not the file the hub described; they have been deleted."""


class DownloadCancelled(ModelsError):
    """The writer cancelled or paused; the partial file is kept so it can resume later."""


class DownloadInProgress(ModelsError):
    """Another download (another window or app instance) is writing the same file."""


class InvalidModel(ModelsError):
    """A file that is not a GGML GPT-2 model the engine can safely load."""


class UnknownModel(ModelsError):
    """No catalog entry or installed model has that name."""


class ImportCancelled(ModelsError):
    """The writer cancelled copying a model file in; nothing of it was kept."""


class ModelAlreadyInstalled(ModelsError):
    """Importing would overwrite a different model file of the same name."""
