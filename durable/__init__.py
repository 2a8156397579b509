"""Files that must survive crashes: one owner for atomic files, locks and the SQLite store.

* :mod:`durable.files` - a whole file written atomically and durably (temporary file in
  the same directory, fsync, rename, fsync of the directory), with its mode, never
  overwriting when asked not to (keys);
* :mod:`durable.database` - a SQLite file: atomic creation, WAL with synchronous=FULL,
  per-process connections, transactions, a worker-thread runner, failures named;
* :mod:`durable.locks` - an flock shared by every process of a host, waited for with a
  deadline.

Nothing here knows what the files hold (the endpoint's security records, the CA
toolkit's serials, the client's remotes): callers pass the path, the content and the
words for their messages.

May import: the standard library, trio (to run a blocking call in a worker thread and
to wait for a lock without blocking the event loop) and :mod:`core` (for the one error
hierarchy).  Nothing else of ours: the endpoint, the CA toolkit, the client and the
stand-in all build on it (the layers are stated in ``pyproject.toml``).
"""
