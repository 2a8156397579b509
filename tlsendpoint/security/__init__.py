"""Security features the endpoint adds on top of albatross (issue 6).

Each module is self-contained with a small hook API; the endpoint calls them
through one object per connection, in the order documented in :mod:`.gate`:

* :mod:`.quota` - quotas that cannot be multiplied by sub-delegation (pure);
* :mod:`.audit` - hash-chained JSON-lines audit log that fails closed, and its verifier
  (:mod:`.auditformat`: the record format and the reader);
* :mod:`.rollback` - per-path newest delegation, older ones refused;
* :mod:`.replay` - a state-changing leaf runs once;
* :mod:`.store` - the crash-safe state of both (SQLite) and the host-wide quota lock;
* :mod:`.revocation` - CRLs from a directory or handed in by a delegate;
* :mod:`.explain` - "would the endpoint allow this, and if not why" offline.
"""

from __future__ import annotations

from core.errors import PolicyError

__all__ = ["SecurityRefusal"]


class SecurityRefusal(PolicyError):
    """The endpoint refuses the request for a security reason; ``message`` says which and why.

    An answer to a client, never the end of a command-line tool: no exit code of its own.
    """
