"""The TLS floor: the cheapest way our TLS library serves what the endpoint serves.

Run: ``.venv/bin/python bench/floor.py PORT CA CERT KEY`` (the bench starts it).

The same ``ssl.SSLContext`` the endpoint builds (:func:`load_server_context`: TLS 1.3
only, client certificate required and verified against CA, no tickets, released
buffers), on a real TCP socket, with nothing else: one blocking loop in one thread
that accepts, completes the handshake, sends one fixed reply frame (an empty
``info`` reply, the size of the endpoint's), sends close_notify and closes.  No event
loop, no authorisation, no daemon, no log, no task per connection: whatever the
endpoint spends above this CPU per connection is ours, not OpenSSL's.

A blocking server serves one connection at a time (the others wait in the backlog), so
its commands/s and latencies are not comparable; only its CPU per connection is
(``loadgen.py --server-pid``, from ``/proc`` like the endpoint's).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import ssl
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.wire import Header, Message, Name, UnikernelInfoList, encode_message, frame
from tlsendpoint.tlscontext import load_server_context

#: A peer that stalls cannot hold the loop longer than this (seconds).
PEER_TIMEOUT = 10.0


def serve(port: int, context: ssl.SSLContext) -> None:
    reply = frame(encode_message(Message(Header(Name((), None), 0), UnikernelInfoList(()))))
    listener = socket.create_server(("127.0.0.1", port), backlog=4096)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        raw, _ = listener.accept()
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw.settimeout(PEER_TIMEOUT)
        with contextlib.suppress(OSError), raw:
            tls = context.wrap_socket(raw, server_side=True)
            tls.sendall(reply)
            tls.setblocking(False)  # close_notify out; we do not wait for the peer's
            with contextlib.suppress(ssl.SSLError):
                tls.unwrap()
            tls.close()


def main() -> None:
    port, ca, cert, key = int(sys.argv[1]), *map(Path, sys.argv[2:5])
    serve(port, load_server_context(ca, cert, key))


if __name__ == "__main__":
    main()
