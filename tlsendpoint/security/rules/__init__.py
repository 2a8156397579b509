"""The security rules of issue 6 as pure functions: values in, a decision or a refusal out.

* :mod:`.quota` - quotas that cannot be multiplied by sub-delegation;
* :mod:`.reservations` - requests in flight count against the quotas until the daemon replied;
* :mod:`.naming` - no collisions between a delegate's path and its parent's objects;
* :mod:`.rollback` - per delegation path the newest intermediate; older ones refused;
* :mod:`.replay` - a state-changing leaf runs once;
* :mod:`.revocation` - which CRL counts for which certificate, and which CRL a delegate
  may hand in;
* :mod:`.auditformat` - the audit log's record format and its one reader (bytes in).

These modules do no I/O, read no clock (the time is a parameter) and never await, so
the endpoint (through :mod:`tlsendpoint.security.gate`) and the offline verdict
(:mod:`tlsendpoint.security.explain`) run the very same code.  They may import the
protocol core (``core``), ``cryptography``, the standard library's pure modules and
:class:`tlsendpoint.security.SecurityRefusal`; never trio, the state stores
(:mod:`tlsendpoint.security.state`), the gate, or the files, sockets and clocks those
use.  The import contract "Security rules are pure" in pyproject.toml checks it.
"""
