"""Errors of the client, each knowing albatross-client's exit code (behaviour.md §4.7).

albatross-client reports every outcome as an exit status; we keep its numbers so
that scripts written against it keep working.  The classes derive from the
project's one hierarchy (:mod:`core.errors`, which holds the numbers,
:class:`ExitStatus`, re-exported here); alba exits with the code the class
carries (:func:`core.errors.exit_code`).
"""

from __future__ import annotations

from core.errors import AlbatrossError, ExitStatus

__all__ = [
    "ChainFailure",
    "CliFailed",
    "ClientError",
    "CommunicationFailed",
    "ConnectFailed",
    "ExitStatus",
    "HttpFailed",
    "InternalError",
    "LocalAuthenticationFailed",
    "RemoteAuthenticationFailed",
    "RemoteCommandFailed",
]


class ClientError(AlbatrossError):
    """A client failure with albatross's exit code.

    ``log`` says how albatross reports it: ``"error"`` as a ``[ERROR]`` log line on
    stdout, ``"term"`` as a command-line error on stderr, ``"none"`` if the reason
    was already printed.
    """

    exit_code = int(ExitStatus.CLI_FAILED)
    log = "error"

    def __init__(self, message: str, log: str | None = None) -> None:
        super().__init__(message)
        if log is not None:
            self.log = log


class ChainFailure(ClientError):
    """Our own chain does not validate against ``--server-ca``."""

    exit_code = int(ExitStatus.CHAIN_FAILURE)


class RemoteCommandFailed(ClientError):
    """The daemon answered with a failure."""

    exit_code = int(ExitStatus.REMOTE_COMMAND_FAILED)


class HttpFailed(ClientError):
    """builder-web did not answer as expected (``update``)."""

    exit_code = int(ExitStatus.HTTP_FAILED)


class LocalAuthenticationFailed(ClientError):
    """The server refused our certificate (bad_certificate / certificate_expired alert)."""

    exit_code = int(ExitStatus.LOCAL_AUTHENTICATION_FAILED)


class RemoteAuthenticationFailed(ClientError):
    """The server's certificate does not validate (or names another host)."""

    exit_code = int(ExitStatus.REMOTE_AUTHENTICATION_FAILED)


class CommunicationFailed(ClientError):
    """Read or write failed, unexpected data, or the stream ended in the wrong state."""

    exit_code = int(ExitStatus.COMMUNICATION_FAILED)


class ConnectFailed(ClientError):
    """The socket or host could not be reached."""

    exit_code = int(ExitStatus.CONNECT_FAILED)


class CliFailed(ClientError):
    """The command line asked for something we cannot do."""

    exit_code = int(ExitStatus.CLI_FAILED)


class InternalError(ClientError):
    """A message we should never receive, e.g. a command as a reply."""

    exit_code = int(ExitStatus.INTERNAL_ERROR)
