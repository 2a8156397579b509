"""The stand-in's three sockets, each with its protocol: vmmd, console, stat.

This module sits above :mod:`standin.daemon` (the host's state and operations) and
the protocol handlers built on it, and hands the handlers to :meth:`Daemon.serve`.
The sockets are the routing table's (:class:`core.routing.Socket`), the same names
the endpoint and the client connect to.
"""

from __future__ import annotations

from functools import partial

import trio

from core.routing import Socket
from standin.daemon import Daemon
from standin.streams import console_connection, stats_connection, stats_timer
from standin.vmmd_server import vmmd_connection

__all__ = ["serve"]


async def serve(
    daemon: Daemon, *, task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run *daemon* on its three sockets until cancelled."""
    handlers = {
        Socket.VMMD.value: partial(vmmd_connection, daemon),
        Socket.CONSOLE.value: partial(console_connection, daemon),
        Socket.STATS.value: partial(stats_connection, daemon),
    }
    await daemon.serve(handlers, stats_timer, task_status=task_status)
