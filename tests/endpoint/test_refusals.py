"""Through the endpoint: every post-handshake refusal is a Failure reply with its reason
(albatross closes silently), and every invalid chain fails the handshake and is logged."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing
from cryptography import x509

from core.clock import fixed_clock
from core.wire import (
    ROOT,
    Command,
    ConsoleAdd,
    Failure,
    Header,
    PolicyAdd,
    PolicyRemove,
    StatsAdd,
    UnikernelInfo,
)
from tests.endpoint.harness import Harness, open_harness
from tests.endpoint.pki import NOW, POLICY, Identity, Pki, custom_cert

Make = Callable[[Harness], Identity]


def _plain(cn: str | None, command: Command | None = None, raw: bytes | None = None) -> Make:
    def make(h: Harness) -> Identity:
        cert, key = custom_cert(
            (h.pki.root, h.pki.root_key),
            cn,
            command=command,
            raw_extension=raw,
        )
        return Identity([cert], key)

    return make


def _under_ca(ca_kwargs: dict[str, object]) -> Make:
    def make(h: Harness) -> Identity:
        ca = custom_cert((h.pki.root, h.pki.root_key), "sub", ca=True, **ca_kwargs)  # type: ignore[arg-type]
        leaf, key = custom_cert(ca, "x", command=UnikernelInfo())
        return Identity([leaf, ca[0]], key)

    return make


def _too_long(h: Harness) -> Identity:
    level = h.pki.sub_ca("l0")
    cas = [level]
    for i in range(1, 9):
        level = h.pki.sub_ca(f"l{i}", parent=level)
        cas.insert(0, level)
    return h.pki.leaf("x", UnikernelInfo(), via=cas)


REFUSALS: dict[str, tuple[Make, str]] = {
    "no extension": (_plain("x"), "leaf certificate does not contain an albatross extension"),
    "undecodable": (_plain("x", raw=b"\x30\x00"), "couldn't parse albatross extension"),
    "bad cn": (_plain("a b", UnikernelInfo()), "invalid label 'a b'"),
    "console add": (_plain("x", ConsoleAdd(3)), "unexpected command: console add"),
    "stats add": (_plain("x", StatsAdd("v", 1)), "unexpected command: stats add"),
    "policy add": (_plain("x", PolicyAdd(POLICY)), "unexpected command: policy add"),
    "policy remove": (_plain("x", PolicyRemove()), "unexpected command: policy remove"),
    "intermediate command": (
        _under_ca({"command": UnikernelInfo()}),
        "unexpected wire unikernel info in intermediate certificate CN=sub",
    ),
    "intermediate without cn": (
        lambda h: _under_ca_no_cn(h),
        "policy add may not have an empty name",
    ),
    "ca without keyUsage": (
        _under_ca({"command": PolicyAdd(POLICY), "key_usage": None}),
        "certificate not acceptable: CN=sub: a CA certificate needs a keyUsage extension",
    ),
    "chain too long": (_too_long, "certificate chain too long: 10 certificates, at most 9"),
}


def _under_ca_no_cn(h: Harness) -> Identity:
    ca = custom_cert((h.pki.root, h.pki.root_key), None, ca=True, command=PolicyAdd(POLICY))
    leaf, key = custom_cert(ca, "x", command=UnikernelInfo())
    return Identity([leaf, ca[0]], key)


@pytest.mark.parametrize("case", sorted(REFUSALS))
async def test_refusal_is_answered(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "albatross.endpoint")
    make, reason = REFUSALS[case]
    async with open_harness(tmp_path, tmp_path / "no-daemon") as h:
        client = await h.connect(make(h))
        replies = await client.read_all()
    assert len(replies) == 1 and client.clean_close
    assert replies[0].header == Header(ROOT, 0, 5)
    payload = replies[0].payload
    assert isinstance(payload, Failure) and reason in payload.message
    (line,) = [r.getMessage() for r in caplog.records if r.name == "albatross.endpoint"]
    assert 'outcome="refused: ' in line


def _expired(h: Harness) -> Identity:
    old = NOW - dt.timedelta(days=3)
    cert, key = custom_cert(
        (h.pki.root, h.pki.root_key),
        "x",
        command=UnikernelInfo(),
        not_before=old,
        not_after=old + dt.timedelta(days=1),
    )
    return Identity([cert], key)


def _not_yet_valid(h: Harness) -> Identity:
    soon = NOW + dt.timedelta(days=1)
    cert, key = custom_cert(
        (h.pki.root, h.pki.root_key),
        "x",
        command=UnikernelInfo(),
        not_before=soon,
        not_after=soon + dt.timedelta(days=1),
    )
    return Identity([cert], key)


def _unknown_critical(h: Harness) -> Identity:
    odd = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    cert, key = custom_cert(
        (h.pki.root, h.pki.root_key), "x", command=UnikernelInfo(), extra=[(odd, True)]
    )
    return Identity([cert], key)


def _server_eku(h: Harness) -> Identity:
    cert, key = custom_cert(
        (h.pki.root, h.pki.root_key),
        "x",
        command=UnikernelInfo(),
        eku=[x509.oid.ExtendedKeyUsageOID.SERVER_AUTH],
    )
    return Identity([cert], key)


def _path_length(h: Harness) -> Identity:
    top = custom_cert(
        (h.pki.root, h.pki.root_key), "top", ca=True, path_length=0, command=PolicyAdd(POLICY)
    )
    below = custom_cert(top, "below", ca=True, command=PolicyAdd(POLICY))
    leaf, key = custom_cert(below, "x", command=UnikernelInfo())
    return Identity([leaf, below[0], top[0]], key)


def _foreign(h: Harness) -> Identity:
    stranger = custom_cert(None, "ca", ca=True)  # same name as our CA, different key
    leaf, key = custom_cert(stranger, "x", command=UnikernelInfo())
    return Identity([leaf], key)


HANDSHAKE_FAILURES: dict[str, tuple[Make, str]] = {
    "expired": (_expired, "certificate has expired"),
    "not yet valid": (_not_yet_valid, "certificate is not yet valid"),
    "unknown critical extension": (
        _unknown_critical,
        "unhandled critical extension",
    ),
    "serverAuth only": (_server_eku, "unsuitable certificate purpose"),
    "path length": (_path_length, "path length constraint exceeded"),
    "foreign CA": (_foreign, "certificate signature failure"),
}


@pytest.mark.parametrize("case", sorted(HANDSHAKE_FAILURES))
async def test_invalid_chain_fails_the_handshake(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    import re

    caplog.set_level(logging.INFO, "albatross.endpoint")
    make, reason = HANDSHAKE_FAILURES[case]
    async with open_harness(tmp_path, tmp_path / "no-daemon") as h:
        server_side, client_side = trio.testing.memory_stream_pair()
        h.nursery.start_soon(h.endpoint.handle, server_side, "bad-peer")
        tls = trio.SSLStream(client_side, h.pki.client(make(h)), server_hostname=None)
        with pytest.raises(trio.BrokenResourceError):
            await tls.do_handshake()  # TLS 1.3: the alert arrives on the first read
            await tls.receive_some(1)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "albatross.endpoint"]
    assert 'outcome="TLS handshake failed: ' in line
    assert re.search(reason, line), line
    assert "chain=" not in line  # nothing unverified is logged as if it were a chain


#: A day far from any day this suite runs on.
FAR = dt.datetime(2031, 5, 17, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("seconds_after_expiry", "served"), [(-60, True), (-1, True), (1, False), (60, False)]
)
async def test_the_endpoint_judges_chains_by_its_clock(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, seconds_after_expiry: int, served: bool
) -> None:
    """A leaf issued on FAR, judged by an endpoint whose clock reads around its notAfter.

    The notAfter second itself is left out: OpenSSL 3.0 counts it as expired, newer
    releases as valid (RFC 5280 says valid).
    """
    caplog.set_level(logging.INFO, "albatross.endpoint")
    pki = Pki(tmp_path, now=FAR, verify_time=FAR)
    identity = pki.leaf("x", UnikernelInfo())
    expiry = identity.chain[0].not_valid_after_utc
    clock = fixed_clock(expiry + dt.timedelta(seconds=seconds_after_expiry))
    async with open_harness(tmp_path, tmp_path / "no-daemon", pki=pki, clock=clock) as h:
        if served:  # past the handshake: the missing daemon is the only complaint
            (reply,) = await h.run(identity)
            assert isinstance(reply.payload, Failure)
            assert "vmmd.sock" in reply.payload.message
        else:
            server_side, client_side = trio.testing.memory_stream_pair()
            h.nursery.start_soon(h.endpoint.handle, server_side, "late-peer")
            tls = trio.SSLStream(client_side, pki.client(identity), server_hostname=None)
            with pytest.raises(trio.BrokenResourceError):
                await tls.do_handshake()
                await tls.receive_some(1)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "albatross.endpoint"]
    assert ("certificate has expired" in line) is not served, line
