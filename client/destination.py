"""Where a command goes: a local daemon socket, a remote endpoint, or a CSR (pure).

albatross-client's rules (behaviour.md §4.1): exactly one of ``--socket``,
``--destination``, ``--csr``; a remote port defaults to 1025 and the last ``:``
separates it (we also accept ``[v6]:port``); the local socket is
``<tmpdir>/util/<daemon>.sock``.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from core import hostport
from core.routing import Socket

__all__ = [
    "DEFAULT_PORT",
    "Csr",
    "Destination",
    "Local",
    "Remote",
    "default_tmpdir",
    "parse_host_port",
]

DEFAULT_PORT = 1025


def default_tmpdir() -> Path:
    """``/run/albatross`` on Linux, ``/var/run/albatross`` on FreeBSD and macOS."""
    return Path("/run/albatross" if platform.system() == "Linux" else "/var/run/albatross")


def parse_host_port(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``HOST[:PORT]`` (:func:`core.hostport.parse_host_port`); ``-`` is the "print the
    chain" pseudo-destination."""
    return hostport.parse_host_port(text, default_port)


@dataclass(frozen=True)
class Local:
    socket: str | None  # explicit --socket, "-" = print the DER command
    tmpdir: Path

    def socket_path(self, daemon: Socket) -> str:
        """``--socket``, or the daemon's socket under ``$TMPDIR/util/`` (the routing table's)."""
        return self.socket or str(self.tmpdir / "util" / daemon.filename)


@dataclass(frozen=True)
class Remote:
    host: str
    port: int
    ca: Path
    ca_key: Path
    server_ca: Path
    key_type: str = "ed25519"
    server_name: str | None = None


@dataclass(frozen=True)
class Csr:
    key_type: str = "ed25519"


Destination = Local | Remote | Csr
