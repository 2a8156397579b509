"""Security features the endpoint adds on top of albatross (issue 6).

Each module is self-contained with a small hook API; the endpoint calls them
through one object per connection, in the order documented in :mod:`.gate`:

* :mod:`.rules` - the pure rules: quotas, reservations, names, anti-rollback, replay,
  revocation and the audit record format;
* :mod:`.state` - the state in files: replay and anti-rollback records (SQLite), the
  hash-chained audit log that fails closed, and its verifier, the CRL directory and
  the CRLs delegates hand in;
* :mod:`.store` - crash-safe SQLite files and the host-wide quota lock;
* :mod:`.explain` - "would the endpoint allow this, and if not why" offline.
"""

from __future__ import annotations

from core.errors import PolicyError

__all__ = ["SecurityRefusal"]


class SecurityRefusal(PolicyError):
    """The endpoint refuses the request for a security reason; ``message`` says which and why."""

    exit_code = 4
