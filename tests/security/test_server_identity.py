"""Point 7: a delegate's self-issued "server" certificate cannot impersonate the endpoint.

The delegate alice holds an intermediate CA key under the operator's root, which
is also the client's --server-ca.  She mints a server certificate (even with the
right name) and runs an endpoint with it: the chain verifies up to the root, so
OpenSSL alone accepts it; ``alba`` refuses it because a server certificate must
be issued directly by the trust anchor.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import trio
from cryptography.hazmat.primitives import serialization

from ca import profiles
from client.errors import RemoteAuthenticationFailed
from client.tls import check_server_cert
from standin.testing import open_standin
from tests.endpoint.pki import Pki, custom_cert, write_chain
from tests.security.rig import now, small
from tlsendpoint.activation import tcp_listen_socket
from tlsendpoint.limits import Limits
from tlsendpoint.server import Endpoint
from tlsendpoint.tlscontext import load_server_context

ALBA = Path(sys.executable).parent / "alba"


def _key_file(path: Path, key: profiles.PrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


async def _alba_info(port: int, pki: Pki, root_key: Path, *extra: str) -> tuple[int, str]:
    result = await trio.run_process(
        [str(ALBA), "info", "-d", f"127.0.0.1:{port}", "--ca", str(pki.ca_file),
         "--ca-key", str(root_key), "--server-ca", str(pki.ca_file), *extra],
        capture_stdout=True, capture_stderr=True, check=False,
    )  # fmt: skip
    return result.returncode, (result.stdout + result.stderr).decode()


async def _serve_and_ask(
    tmp_path: Path, pki: Pki, cert_file: Path, key_file: Path, root_key: Path, *extra: str
) -> tuple[int, str]:
    async with open_standin(tmp_path) as standin:
        ctx = load_server_context(pki.ca_file, cert_file, key_file)
        endpoint = Endpoint(ctx, standin.tmpdir / "util", Limits())
        listener = trio.SocketListener(
            trio.socket.from_stdlib_socket(tcp_listen_socket("127.0.0.1", 0, 8))
        )
        shutdown = trio.Event()
        async with trio.open_nursery() as nursery:
            (address,) = await nursery.start(endpoint.serve, [listener], shutdown)
            try:
                return await _alba_info(address[1], pki, root_key, *extra)
            finally:
                shutdown.set()


async def test_a_delegate_minted_server_certificate_is_refused(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    root_key = _key_file(tmp_path / "ca.key", pki.root_key)
    # legitimate: the operator's server certificate, issued by the root
    code, out = await _serve_and_ask(tmp_path, pki, pki.cert_file, pki.key_file, root_key)
    assert (code, out.strip()) == (0, "host [unikernel: :]: no unikernels"), out
    # the attack: alice's CA key issues a server certificate, with the expected name
    alice_key = profiles.generate_key()
    alice = profiles.intermediate(
        pki.root, pki.root_key, alice_key.public_key(), "alice", small(), now()
    )
    fake_key = profiles.generate_key()
    fake = profiles.server_cert(
        alice, alice_key, fake_key.public_key(), "server", now(), dns_names=["endpoint.example"]
    )
    fake_chain = write_chain(tmp_path / "fake.pem", [fake, alice])
    fake_key_file = _key_file(tmp_path / "fake.key", fake_key)
    for extra in ((), ("--server-name", "endpoint.example")):
        code, out = await _serve_and_ask(tmp_path, pki, fake_chain, fake_key_file, root_key, *extra)
        assert code == 120, out
        assert (
            "the server certificate is issued by CN=alice, not directly by the --server-ca "
            "certificate" in out
        ), out


# -- the name check itself (pure): a wildcard covers exactly one label ---------------------

_WILDCARD_CASES = [
    ("a.example", True),
    ("A.Example.", True),  # DNS names compare without case and without the final dot
    ("a.b.example", False),  # "*" stands for one label, never for several
    ("example", False),  # ... and never for none
    (".example", False),  # an empty label is not a host name
    ("a.example.org", False),
    ("192.0.2.1", False),  # an IP address never matches a DNS name
]


@pytest.mark.parametrize(("server_name", "accepted"), _WILDCARD_CASES)
def test_a_wildcard_san_covers_exactly_one_label(server_name: str, accepted: bool) -> None:
    root = custom_cert(None, "ca", ca=True)
    key = profiles.generate_key()
    cert = profiles.server_cert(*root, key.public_key(), "server", now(), dns_names=["*.example"])
    if accepted:
        check_server_cert(cert, server_name)
        return
    with pytest.raises(RemoteAuthenticationFailed) as caught:
        check_server_cert(cert, server_name)
    assert caught.value.message == (
        f"remote authentication failure: the server certificate is not for {server_name}"
    )
