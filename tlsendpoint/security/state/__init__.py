"""The endpoint's security state: what is kept in files between connections and restarts.

* :mod:`.records` - the replay records and the anti-rollback table in ``security.db``
  (SQLite, crash-safe), checked for damage;
* :mod:`.legacy` - the previous format's state files, migrated into the store once;
* :mod:`.faults` - the crash tests' kill points in the write path;
* :mod:`.auditlog` - the hash-chained audit log file: appends that fail closed, crash
  recovery, ``verify``;
* :mod:`.crldir` - the CRL directory, reloaded when it changes, and the CRLs delegates
  hand in, stored there.

Each store reads and writes its files and applies the decisions of the pure rules
(:mod:`tlsendpoint.security.rules`) to what it holds; times come in as parameters.  A
store may import the rules, the protocol core, the crash-safe file helpers
(:mod:`durable`), trio (to run a write in a worker thread) and the
standard library; never the gate, the per-process ``Security`` object or the daemon
queries, which call the stores and not the other way round.
"""
