"""sd_notify(3) for ``Type=notify`` units: READY=1 once we accept, STOPPING=1 on SIGTERM.

systemd passes the address of its notification socket in ``$NOTIFY_SOCKET``: a
filesystem path, or ``@name`` for the abstract namespace (``@`` stands for the
leading NUL).  A state is one datagram of ``KEY=value`` lines.  Written by hand
(a dozen lines) rather than depending on python-systemd, which needs libsystemd
and a C compiler to install.  Without ``$NOTIFY_SOCKET`` (not under systemd, or
not ``Type=notify``) nothing is sent.  A failure to notify is logged and
otherwise ignored, as sd_notify's callers do: systemd then times the start out
and says so, which is the operator's signal.

Only the main process notifies (``NotifyAccess=main``): with ``--workers`` the
supervisor does, and the workers get no ``$NOTIFY_SOCKET``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from tlsendpoint.connlog import LOGGER

__all__ = ["NOTIFY_SOCKET", "notify"]

NOTIFY_SOCKET = "NOTIFY_SOCKET"


def notify(state: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send *state* (e.g. ``"READY=1\\nSTATUS=listening"``) to systemd; ``True`` if sent."""
    address = environ.get(NOTIFY_SOCKET, "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):  # vsock:... (VMs) is not for us
        LOGGER.warning("%s=%r: not a unix socket; not notifying systemd", NOTIFY_SOCKET, address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), address)
    except OSError as exc:
        LOGGER.warning("cannot notify systemd at %s: %s", environ[NOTIFY_SOCKET], exc)
        return False
    return True
