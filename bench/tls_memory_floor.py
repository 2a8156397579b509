"""The memory floor of a held TLS connection: one server ``ssl.SSLObject`` after its handshake.

Run: ``.venv/bin/python bench/tls_memory_floor.py [--count 400]``.

Handshakes ``--count`` connections in memory (the endpoint's server context,
:func:`load_server_context`, with released buffers; a client context with an Ed25519
leaf), writes one small record on each, frees the client side and keeps the server's
SSL object and its two memory BIOs, as a held console subscription does.  Prints the
process's RSS growth per held object: what OpenSSL itself keeps per connection, below
which no endpoint built on this TLS library can hold a stream.  ``--pyopenssl``: the same
with pyOpenSSL's ``SSL.Connection`` on the OpenSSL that cryptography's wheel bundles
(``MODE_RELEASE_BUFFERS`` set, the same certificates), for comparison.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import ssl
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from bench.bench_endpoint import write_leaf
from ca import profiles
from core.wire import UnikernelInfo
from tlsendpoint.tlscontext import load_server_context

Held = tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit("bench: no VmRSS in /proc/self/status")


def contexts(work: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    now = dt.datetime.now(dt.UTC)
    ca_key = profiles.generate_key("ed25519")
    ca_cert = profiles.root_ca(ca_key, "ca", now)
    key = profiles.generate_key("ed25519")
    cert = profiles.server_cert(ca_cert, ca_key, key.public_key(), "server", now, ips=["::1"])
    (work / "ca.pem").write_bytes(ca_cert.public_bytes(Encoding.PEM))
    (work / "server.pem").write_bytes(cert.public_bytes(Encoding.PEM))
    (work / "server.key").write_bytes(
        key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    chain, leaf_key = write_leaf(work, "leaf", ca_cert, ca_key, ".", UnikernelInfo(), "ed25519")
    server = load_server_context(work / "ca.pem", work / "server.pem", work / "server.key")
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.load_verify_locations(str(work / "ca.pem"))
    client.load_cert_chain(str(chain), str(leaf_key))
    return server, client


def held_connection(server: ssl.SSLContext, client: ssl.SSLContext) -> Held:
    incoming, outgoing, to_client, from_client = (ssl.MemoryBIO() for _ in range(4))
    ours = server.wrap_bio(incoming, outgoing, server_side=True)
    theirs = client.wrap_bio(to_client, from_client)
    for _ in range(10):
        for side in (theirs, ours):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        if from_client.pending:
            incoming.write(from_client.read())
        if outgoing.pending:
            to_client.write(outgoing.read())
    ours.write(b"subscribed")
    to_client.write(outgoing.read())
    if theirs.read(100) != b"subscribed":
        raise SystemExit("bench: the in-memory handshake failed")
    return ours, incoming, outgoing


def held_pyopenssl(work: Path, count: int) -> tuple[str, list[object]]:
    """*count* held server connections through pyOpenSSL; its OpenSSL's name."""
    from OpenSSL import SSL

    server = SSL.Context(SSL.TLS_METHOD)
    server.set_min_proto_version(SSL.TLS1_3_VERSION)
    server.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT)
    server.set_options(SSL.OP_NO_TICKET)
    server.set_mode(SSL.MODE_RELEASE_BUFFERS)
    server.use_certificate_chain_file(str(work / "server.pem"))
    server.use_privatekey_file(str(work / "server.key"))
    server.load_verify_locations(str(work / "ca.pem"))
    client = SSL.Context(SSL.TLS_METHOD)
    client.use_certificate_chain_file(str(work / "leaf.pem"))
    client.use_privatekey_file(str(work / "leaf.key"))
    client.load_verify_locations(str(work / "ca.pem"))
    held: list[object] = []
    for _ in range(count):
        ours, theirs = SSL.Connection(server, None), SSL.Connection(client, None)
        ours.set_accept_state()
        theirs.set_connect_state()
        for _ in range(10):
            for side in (theirs, ours):
                with contextlib.suppress(SSL.WantReadError):
                    side.do_handshake()
            with contextlib.suppress(SSL.WantReadError):
                ours.bio_write(theirs.bio_read(65536))
            with contextlib.suppress(SSL.WantReadError):
                theirs.bio_write(ours.bio_read(65536))
        ours.send(b"subscribed")
        theirs.bio_write(ours.bio_read(65536))
        if theirs.recv(100) != b"subscribed":
            raise SystemExit("bench: the in-memory pyOpenSSL handshake failed")
        held.append(ours)
    return SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode(), held


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--pyopenssl", action="store_true", help="also measure pyOpenSSL")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="albatls") as tmp:
        server, client = contexts(Path(tmp))
        held = [held_connection(server, client) for _ in range(50)]  # warm the allocator
        gc.collect()
        before = rss_kib()
        held += [held_connection(server, client) for _ in range(a.count)]
        gc.collect()
        after = rss_kib()
        print(
            f"ssl, {ssl.OPENSSL_VERSION}: {(after - before) / a.count:.1f} KiB RSS per held "
            f"server SSLObject with its memory BIOs ({a.count} held, {len(held)} in all)"
        )
        if a.pyopenssl:
            held_pyopenssl(Path(tmp), 50)
            gc.collect()
            before = rss_kib()
            version, more = held_pyopenssl(Path(tmp), a.count)
            gc.collect()
            after = rss_kib()
            print(
                f"pyOpenSSL, {version}: {(after - before) / a.count:.1f} KiB RSS per held "
                f"server Connection ({len(more)} held)"
            )


if __name__ == "__main__":
    main()
