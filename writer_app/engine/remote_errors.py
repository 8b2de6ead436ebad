"""What can go wrong talking to a completions server, each as one sentence for the writer.

Every message names the host (never the API key) and says what to do, because the
status bar and the command line show it as it is.
"""

from __future__ import annotations

from writer_app.engine.protocol import EngineError


class RemoteError(EngineError):
    """Base class: a remote generation or connection failed."""


class RemoteConfigError(RemoteError, ValueError):
    """The server address (or another setting) cannot be used as given."""


class ServerUnreachable(RemoteError):
    """Nothing answers at the address: down, wrong port, no network."""


class AuthenticationFailed(RemoteError):
    """401/403: a key is needed, or the one sent was refused."""


class UnknownModel(RemoteError):
    """The server does not serve the model asked for."""


class ServerBusy(RemoteError):
    """429/503 that outlasted the bounded retries."""


class ServerTimeout(RemoteError):
    """The server took too long to connect, answer or send the next token."""


class StreamCut(RemoteError):
    """The stream ended before the server said the completion was complete."""


class ServerRejected(RemoteError):
    """Any other refusal (4xx/5xx, or an error event in the stream)."""
