"""One log line per connection: who (peer, chain), what (name, command), how it ended.

The record is filled in as the connection progresses and formatted once at
the end, so every connection - refused, failed, crashed or successful - leaves
exactly one line that answers "who did what".  Certificates are named by
subject and SHA-256 fingerprint (enough to find them in a CA database);
values are quoted so a CN cannot forge extra fields or lines.

:func:`configure_logging` sends the lines to stderr, syslog or the journal.
"""

from __future__ import annotations

import logging
import logging.handlers
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tlsendpoint.chainrules import subject_text

__all__ = [
    "LOGGER",
    "ConnectionRecord",
    "JournalHandler",
    "configure_logging",
    "describe_chain",
]

LOGGER = logging.getLogger("albatross.endpoint")

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    if escaped.isprintable():  # the usual case: no per-character pass
        return '"' + escaped + '"'
    return '"' + "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in escaped) + '"'


def describe_chain(chain: Sequence[x509.Certificate]) -> str:
    """``CN=a1 sha256:ab12… <- CN=alice sha256:…``, leaf first."""
    return " <- ".join(
        f"{subject_text(cert)} sha256:{cert.fingerprint(hashes.SHA256()).hex()}" for cert in chain
    )


@dataclass
class ConnectionRecord:
    peer: str
    chain: str = ""
    name: str = ""
    command: str = ""
    outcome: str = "closed before the handshake completed"
    ok: bool = False
    details: list[str] = field(default_factory=list)

    def line(self, duration: float) -> str:
        parts = [f"peer={self.peer}"]
        if self.chain:
            parts.append(f"chain={_quote(self.chain)}")
        if self.name:
            parts.append(f"name={_quote(self.name)}")
        if self.command:
            parts.append(f"command={_quote(self.command)}")
        parts.append(f"outcome={_quote(self.outcome)}")
        parts.extend(self.details)
        parts.append(f"duration={duration:.3f}s")
        return " ".join(parts)


class JournalHandler(logging.Handler):
    """Minimal systemd-journald native-protocol sender (one datagram per record)."""

    def __init__(self, identifier: str, path: Path = JOURNAL_SOCKET) -> None:
        super().__init__()
        self.identifier = identifier
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record).replace("\n", " ")
            priority = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4}.get(
                record.levelno, 3
            )
            payload = (
                f"MESSAGE={message}\nPRIORITY={priority}\nSYSLOG_IDENTIFIER={self.identifier}\n"
            ).encode()
            self.sock.sendto(payload, str(self.path))
        except OSError:
            self.handleError(record)

    def close(self) -> None:
        self.sock.close()
        super().close()


def configure_logging(target: str, level: int, identifier: str = "albatross-tls-endpoint") -> None:
    """Route the endpoint's log to ``stderr``, ``syslog``, ``journal`` or ``none``."""
    root = logging.getLogger("albatross")
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.setLevel(level)
    root.propagate = False
    handler: logging.Handler
    if target == "stderr":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    elif target == "syslog":
        address = "/dev/log" if Path("/dev/log").exists() else "/var/run/log"
        handler = logging.handlers.SysLogHandler(
            address=address, facility=logging.handlers.SysLogHandler.LOG_DAEMON
        )
        handler.setFormatter(logging.Formatter(f"{identifier}[%(process)d]: %(message)s"))
    elif target == "journal":
        if not JOURNAL_SOCKET.exists():
            raise FileNotFoundError(2, "no systemd journal socket", str(JOURNAL_SOCKET))
        handler = JournalHandler(identifier)
    else:
        handler = logging.NullHandler()
    root.addHandler(handler)
