"""A refused handshake reaches the client as OpenSSL's alert: seen by ``openssl s_client
-msg`` on the wire, and printed by ``alba`` (exit 119).  Before, the client saw a bare EOF."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from cryptography import x509

from client.tls import classify
from core.clock import Clock, fixed_clock, system_clock
from core.wire import PolicyAdd, UnikernelConfig, UnikernelCreate, UnikernelInfo
from tests.endpoint.pki import NOW, POLICY, Identity, Pki, _pem_key, custom_cert, write_chain
from tests.endpoint.test_client_e2e import _alba, _write_key
from tlsendpoint.activation import tcp_listen_socket
from tlsendpoint.limits import Limits
from tlsendpoint.server import Endpoint
from tlsendpoint.tlscontext import load_server_context

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="the openssl binary is not installed")


@asynccontextmanager
async def serving(
    pki: Pki,
    limits: Limits | None = None,
    clock: Clock = system_clock,
    client_ca: Path | None = None,
) -> AsyncIterator[int]:
    """The endpoint on 127.0.0.1 (no daemons: only handshakes matter here); its port."""
    ctx = load_server_context(client_ca or pki.ca_file, pki.cert_file, pki.key_file)
    endpoint = Endpoint(ctx, pki.tmp / "no-daemons", limits or Limits(), clock=clock)
    sock = tcp_listen_socket("127.0.0.1", 0, 16)
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        (address,) = await nursery.start(endpoint.serve, [listener], shutdown)
        yield int(address[1])
        shutdown.set()


async def s_client(port: int, pki: Pki, identity: Identity, *extra: str) -> str:
    """``openssl s_client -msg`` with *identity*; its whole output."""
    tmp = pki.tmp
    serial = identity.chain[0].serial_number
    leaf = write_chain(tmp / f"s_client-{serial}.pem", identity.chain[:1])
    chain = write_chain(tmp / f"s_client-{serial}-chain.pem", identity.chain[1:] or [pki.root])
    key = tmp / f"s_client-{serial}.key"
    key.write_bytes(_pem_key(identity.key))
    with trio.fail_after(60):
        result = await trio.run_process(
            [str(OPENSSL), "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_3", "-msg",
             "-ign_eof", "-cert", str(leaf), "-cert_chain", str(chain), "-key", str(key),
             "-CAfile", str(pki.ca_file), *extra],
            stdin=b"", capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
    return (result.stdout + result.stderr).decode(errors="replace")


def received_alerts(output: str) -> list[str]:
    return re.findall(r"<<< TLS 1\.3, Alert \[length 0002\], fatal (\w+)", output)


def _expired(pki: Pki) -> Identity:
    old = NOW - dt.timedelta(days=3)
    cert, key = custom_cert(
        (pki.root, pki.root_key), "x", command=UnikernelInfo(),
        not_before=old, not_after=old + dt.timedelta(days=1),
    )  # fmt: skip
    return Identity([cert], key)


def _unknown_ca(pki: Pki) -> Identity:
    stranger = custom_cert(None, "a stranger's CA", ca=True)
    cert, key = custom_cert(stranger, "x", command=UnikernelInfo())
    return Identity([cert, stranger[0]], key)


def _critical_extension(pki: Pki) -> Identity:
    odd = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    cert, key = custom_cert(
        (pki.root, pki.root_key), "x", command=UnikernelInfo(), extra=[(odd, True)]
    )
    return Identity([cert], key)


def _path_too_long(pki: Pki) -> Identity:
    top = custom_cert(
        (pki.root, pki.root_key), "top", ca=True, path_length=0, command=PolicyAdd(POLICY)
    )
    below = custom_cert(top, "below", ca=True, command=PolicyAdd(POLICY))
    leaf, key = custom_cert(below, "x", command=UnikernelInfo())
    return Identity([leaf, below[0], top[0]], key)


def _big(size: int) -> Callable[[Pki], Identity]:
    def make(pki: Pki) -> Identity:
        return pki.leaf("big", UnikernelCreate(UnikernelConfig(image=b"\x17" * size)))

    return make


#: case -> (certificate, endpoint limits, extra s_client options, the alert)
ALERTS: dict[str, tuple[Callable[[Pki], Identity], Limits | None, tuple[str, ...], str]] = {
    "expired": (_expired, None, (), "certificate_expired"),
    "unknown CA": (_unknown_ca, None, (), "unknown_ca"),
    "unsupported critical extension": (_critical_extension, None, (), "certificate_unknown"),
    "path length exceeded": (_path_too_long, None, (), "unknown_ca"),
    "chain over --max-cert-list": (
        _big(200_000),
        Limits(max_cert_list=150_000, cert_budget=150_000),
        (),
        "illegal_parameter",
    ),
    # a first record too short to take a budget share: OpenSSL's 100 KiB limit applies
    "big chain in short records": (
        _big(150_000),
        None,
        ("-maxfraglen", "512"),
        "illegal_parameter",
    ),
}


@needs_openssl
@pytest.mark.parametrize("case", sorted(ALERTS))
async def test_openssl_s_client_receives_the_alert(tmp_path: Path, case: str) -> None:
    make, limits, extra, alert = ALERTS[case]
    pki = Pki(tmp_path)
    async with serving(pki, limits) as port:
        output = await s_client(port, pki, make(pki), *extra)
    assert received_alerts(output) == [alert], output[-2000:]


@needs_openssl
async def test_the_same_big_chain_in_full_records_is_served(tmp_path: Path) -> None:
    """The control for "big chain in short records": full records take a share."""
    pki = Pki(tmp_path)
    async with serving(pki) as port:
        output = await s_client(port, pki, _big(150_000)(pki))
    assert received_alerts(output) == []
    assert "couldn't reach service vmmd" in output  # past the handshake: the Failure reply


async def test_alba_prints_openssl_s_reason_for_an_expired_chain(tmp_path: Path) -> None:
    """The endpoint judges at a later time than alba: alba's fresh leaf has expired there."""
    pki = Pki(tmp_path)
    root_key = _write_key(tmp_path / "ca.key", pki.root_key)
    later = fixed_clock(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    async with serving(pki, clock=later) as port:
        code, out = await _alba(port, pki.ca_file, root_key, pki.ca_file, "info")
    assert code == 119, out
    assert "local authentication failure" in out and "alert certificate expired" in out, out


async def test_alba_prints_openssl_s_reason_for_an_unknown_ca(tmp_path: Path) -> None:
    """The endpoint trusts another CA for clients than the one that issued alba's chain."""
    pki = Pki(tmp_path)
    root_key = _write_key(tmp_path / "ca.key", pki.root_key)
    other = write_chain(tmp_path / "other-ca.pem", [custom_cert(None, "another CA", ca=True)[0]])
    async with serving(pki, client_ca=other) as port:
        code, out = await _alba(port, pki.ca_file, root_key, pki.ca_file, "info")
    assert code == 119, out
    assert "local authentication failure" in out and "alert unknown ca" in out, out


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("[('SSL routines', '', 'sslv3 alert certificate expired')]", 119),
        ("[('SSL routines', '', 'tlsv1 alert unknown ca')]", 119),
        ("[('SSL routines', '', 'sslv3 alert certificate unknown')]", 119),
        ("[('SSL routines', '', 'sslv3 alert bad certificate')]", 119),
        ("[('SSL routines', '', 'sslv3 alert unsupported certificate')]", 119),
        ("[('SSL routines', '', 'sslv3 alert certificate revoked')]", 119),
        ("[('SSL routines', '', 'tlsv1 alert decrypt error')]", 119),
        ("[('SSL routines', '', 'tlsv13 alert certificate required')]", 119),
        ("[('SSL routines', '', 'tlsv1 alert illegal parameter')]", 121),
        ("[('SSL routines', '', 'certificate verify failed')]", 120),
        ("Unexpected EOF", 121),
    ],
)
def test_alba_classifies_the_endpoint_s_alerts(reason: str, code: int) -> None:
    error = classify(Exception(reason), "read failed")
    assert error.exit_code == code
    assert reason in error.message  # OpenSSL's reason is printed


async def test_alba_prints_openssl_s_reason_for_a_ca_of_the_same_name(tmp_path: Path) -> None:
    """Another key under the endpoint's CA name: the chain's signature fails (decrypt_error)."""
    pki = Pki(tmp_path)
    root_key = _write_key(tmp_path / "ca.key", pki.root_key)
    (tmp_path / "namesake").mkdir()
    namesake = Pki(tmp_path / "namesake")  # its root is "CN=ca" too
    async with serving(pki, client_ca=namesake.ca_file) as port:
        code, out = await _alba(port, pki.ca_file, root_key, pki.ca_file, "info")
    assert code == 119, out
    assert "local authentication failure" in out and "alert decrypt error" in out, out
