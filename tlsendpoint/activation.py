"""Where connections come from: a TCP listener, systemd socket activation, or inetd.

* TCP (albatross ``Vmm_lwt.port_socket``): an IPv4 address gives AF_INET, an
  IPv6 address AF_INET6 with ``IPV6_V6ONLY=0`` (``::`` is dual stack);
  ``SO_REUSEADDR``, close-on-exec.
* systemd (``sd_listen_fds``): ``LISTEN_PID`` must be our pid and
  ``LISTEN_FDS`` exactly 1 (albatross's rule); the fd is 3.  With
  ``Accept=no`` it is a listening socket; with ``Accept=yes`` (one service
  instance per connection) it is the connection itself - we tell them apart
  with ``SO_ACCEPTCONN``.
* inetd: the connection is standard input.

Errors are :class:`ActivationError` with albatross's exit code 125.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from tlsendpoint.errors import SetupError

__all__ = [
    "SD_LISTEN_FDS_START",
    "ActivationError",
    "Inherited",
    "inetd_socket",
    "systemd_socket",
    "tcp_listen_socket",
]

SD_LISTEN_FDS_START = 3


class ActivationError(SetupError):
    """The listening socket cannot be made or inherited (exit 125)."""


@dataclass(frozen=True)
class Inherited:
    """A socket handed to us; ``listening`` tells an Accept=no socket from a connection."""

    sock: socket.socket
    listening: bool


def tcp_listen_socket(ip: str, port: int, backlog: int) -> socket.socket:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError as exc:
        raise ActivationError(f"--ip {ip!r} is not an IPv4 or IPv6 address") from exc
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((str(address), port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ActivationError(f"cannot listen on {ip} port {port}: {exc.strerror}") from exc
    return sock


def _inherit(fd: int, what: str) -> Inherited:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ActivationError(f"{what}: fd {fd} is not a socket ({exc.strerror})") from exc
    if sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise ActivationError(f"{what}: fd {fd} is not a stream socket")
    listening = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    os.set_inheritable(fd, False)
    return Inherited(sock, listening)


def systemd_socket(environ: Mapping[str, str], pid: int) -> Inherited:
    """The one socket systemd passed us (albatross: "Systemd socket activation error")."""
    prefix = "Systemd socket activation error"
    listen_pid, listen_fds = environ.get("LISTEN_PID"), environ.get("LISTEN_FDS")
    if listen_pid is None or listen_fds is None:
        raise ActivationError(f"{prefix}: LISTEN_PID and LISTEN_FDS are not set")
    if listen_pid != str(pid):
        raise ActivationError(f"{prefix}: LISTEN_PID is {listen_pid}, but this process is {pid}")
    if listen_fds != "1":
        raise ActivationError(f"{prefix}: LISTEN_FDS is {listen_fds}; exactly one socket needed")
    return _inherit(SD_LISTEN_FDS_START, prefix)


def inetd_socket() -> socket.socket:
    """The connection inetd put on standard input."""
    inherited = _inherit(os.dup(0), "inetd mode: standard input")
    if inherited.listening:
        inherited.sock.close()
        raise ActivationError("inetd mode: standard input is a listening socket, not a connection")
    return inherited.sock
