"""Security features the endpoint adds on top of albatross (issue 6), split by kind.

Read it top down; each module imports only those below it (the "Security by kind"
import contract in pyproject.toml checks it):

* :mod:`.setup` - the endpoint's options (click) and start-up: builds the process's
  :class:`~.process.Security`; :mod:`.explain` - the offline verdict, the same rules
  with the state passed in (its CLI is ``client/audit_cli.py``);
* :mod:`.gate` - one connection's way through the checks, in order: the only entry
  point of the endpoint (``tlsendpoint/server.py``), async;
* :mod:`.process` - :class:`~.process.Security`, the state one endpoint process
  holds (options, opened stores, quota guard) and the SIGHUP reload;
* :mod:`.quotaguard` - quota checks and reservations held until the daemon's reply;
* :mod:`.daemonquery` - the usage queries those checks send to vmmd;
* :mod:`.state` - the stores that touch files: replay and anti-rollback records
  (SQLite), the audit log, the CRL directory and the CRLs delegates hand in;
* :mod:`.rules` - the pure rules: quotas, reservations, names, anti-rollback, replay,
  revocation and the audit record format (no I/O, no clock, no trio: checked).

Crash-safe files, the SQLite database and the host-wide lock are :mod:`durable`'s,
the daemon sockets :mod:`transport`'s.

This module holds only :class:`SecurityRefusal`, which every layer raises; it imports
nothing but the protocol core's errors, so any module of the package may import it.
"""

from __future__ import annotations

from core.errors import PolicyError

__all__ = ["SecurityRefusal"]


class SecurityRefusal(PolicyError):
    """The endpoint refuses the request for a security reason; ``message`` says which and why.

    An answer to a client, never the end of a command-line tool: no exit code of its own.
    """
