"""Every deadline and bound of the endpoint, with its default (albatross has none: §2.8).

Each field is a command-line option of ``albatross-tls-endpoint`` (see
:mod:`tlsendpoint.cli`); times are seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_MAX_CERT_LIST", "DEFAULT_MAX_FRAME", "Limits"]

# This module is imported to build the command line (``--version`` among it), so it
# imports nothing: the frame limit is the codec's, which is not imported here (the codec
# takes a while to load); tests/endpoint/test_units.py checks the two stay equal.

#: Largest frame accepted (``core.wire.DEFAULT_MAX_FRAME``).
DEFAULT_MAX_FRAME = 32 * 1024 * 1024
#: Largest client certificate chain we accept: a 16 MiB leaf (albatross's
#: 2^24 limit on the encoded leaf) plus room for the intermediates.
DEFAULT_MAX_CERT_LIST = 17 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    #: TLS handshake, from accept to the verified chain.
    handshake_timeout: float = 30.0
    #: Waiting for the next chunk of an image upload or block-set stream from the client.
    upload_timeout: float = 60.0
    #: Connecting to a daemon socket and waiting for each reply of a single-reply command,
    #: a policy insertion, or the next chunk of a block dump.
    daemon_timeout: float = 120.0
    #: A console or stats stream with no message from the daemon for this long is closed.
    idle_timeout: float = 900.0
    #: Sending one message to the client (a client that stops reading is dropped).
    send_timeout: float = 60.0
    #: Largest frame accepted from the client or a daemon, in octets.
    max_frame: int = DEFAULT_MAX_FRAME
    #: Largest image a client may upload after the handshake, in octets.
    max_image: int = 64 * 1024 * 1024
    #: Largest client certificate chain (OpenSSL max_cert_list), in octets.
    max_cert_list: int = DEFAULT_MAX_CERT_LIST
    #: Octets of client chains that handshakes may make OpenSSL hold at once, in shares of
    #: ``max_cert_list`` (tlsendpoint.certbudget); 100 KiB per connection come on top.
    cert_budget: int = 4 * DEFAULT_MAX_CERT_LIST
    #: Connections handled at once; further ones wait in the listen backlog.
    max_connections: int = 256
    #: On SIGTERM, how long running connections may continue before they are cancelled.
    grace_period: float = 10.0


#: ``--metrics-max-paths``: delegation paths with series of their own (tlsendpoint.metrics).
DEFAULT_MAX_PATHS = 64
