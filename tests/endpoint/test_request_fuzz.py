"""Every request after the handshake gets a reply: Hypothesis over the whole request path.

Leaves with any albatross extension (valid commands, garbage, cut short, present twice,
critical), an unknown extension (critical or not), any CN, and any bytes sent after the
handshake: the client gets an alert (a refused handshake), or replies ending in a success
or a Failure - never silence - and the endpoint then still serves a plain ``info``.
``pytest -m slow`` runs the long variant.
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
import trio.testing
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ca import profiles
from core.errors import ParseError
from core.wire import (
    EXTENSION_OID,
    SUCCESS_TYPES,
    BlockDump,
    BlockSet,
    Command,
    ConsoleSubscribe,
    Failure,
    FrameDecoder,
    PolicyAdd,
    PolicyInfo,
    StatsSubscribe,
    StringReply,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelInfo,
    UnikernelRestart,
    decode_message,
    encode_extension,
    end_marker,
    frame,
)
from tests.endpoint.fakedaemon import Behaviour, Conn, open_fake_daemon
from tests.endpoint.harness import Harness, open_harness
from tests.endpoint.pki import POLICY, Identity, Pki, custom_cert
from transport.framed import PeerClosed

ALBATROSS = x509.ObjectIdentifier(EXTENSION_OID)
#: Same encoded length as the albatross OID (last arc 43 instead of 42): swapped in afterwards.
PLACEHOLDER = x509.ObjectIdentifier(EXTENSION_OID[:-2] + "43")
UNKNOWN = x509.ObjectIdentifier("1.3.6.1.4.1.99999.7")

COMMANDS: list[Command] = [
    UnikernelInfo(),
    UnikernelDestroy(),
    UnikernelRestart(),
    PolicyInfo(),
    PolicyAdd(POLICY),  # not allowed from a leaf
    StatsSubscribe(),
    ConsoleSubscribe(count=2),
    BlockDump(level=0),
    BlockSet(False),
    UnikernelCreate(UnikernelConfig(image=b"")),  # an upload follows
    UnikernelCreate(UnikernelConfig(image=b"\x7fELF", memory=32)),
]
ENCODED = [encode_extension(c) for c in COMMANDS]


async def answer_anything(conn: Conn) -> None:
    """A daemon that answers every message (policies first), then closes."""
    while True:
        try:
            message = await conn.receive()
        except (PeerClosed, ParseError):
            return
        if isinstance(message.payload, BlockSet):
            await conn.receive_stream()
        await conn.send(StringReply("ok"), message.header.name)
        if not isinstance(message.payload, PolicyAdd):
            return  # a stream or dump ends here: the endpoint answers with a Failure


BEHAVIOURS: dict[str, Behaviour] = {
    "vmmd": answer_anything,
    "console": answer_anything,
    "stats": answer_anything,
}


# -- certificates with a duplicated extension -----------------------------------------


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv_end(der: bytes, start: int) -> int:
    """Where the TLV at *start* ends."""
    first = der[start + 1]
    if first < 0x80:
        return start + 2 + first
    count = first & 0x7F
    return start + 2 + count + int.from_bytes(der[start + 2 : start + 2 + count], "big")


def resign(cert: x509.Certificate, tbs: bytes, key: profiles.PrivateKey) -> x509.Certificate:
    """*cert* with its to-be-signed part replaced by *tbs*, signed again with *key*."""
    der = cert.public_bytes(Encoding.DER)
    inner = 2 + (der[1] & 0x7F if der[1] & 0x80 else 0)
    algorithm = der[_tlv_end(der, inner) : _tlv_end(der, _tlv_end(der, inner))]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(tbs)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    else:
        raise AssertionError(f"no re-signing for {type(key).__name__}")
    bits = b"\x03" + _der_length(len(signature) + 1) + b"\x00" + signature
    body = tbs + algorithm + bits
    return x509.load_der_x509_certificate(b"\x30" + _der_length(len(body)) + body)


@dataclass(frozen=True)
class LeafSpec:
    value: bytes | None  # the albatross extension's value; None: no extension
    twice: bool  # the albatross extension appears twice
    critical: bool  # ... marked critical
    unknown: bool | None  # an unknown extension: None none, else its criticality
    cn: str


def make_leaf(pki: Pki, key: profiles.PrivateKey, spec: LeafSpec) -> Identity:
    extra: list[tuple[x509.ExtensionType, bool]] = []
    if spec.value is not None:
        extra.append((x509.UnrecognizedExtension(ALBATROSS, spec.value), spec.critical))
        if spec.twice:
            extra.append((x509.UnrecognizedExtension(PLACEHOLDER, spec.value), spec.critical))
    if spec.unknown is not None:
        extra.append((x509.UnrecognizedExtension(UNKNOWN, b"\x05\x00"), spec.unknown))
    cert, key = custom_cert(
        (pki.root, pki.root_key), spec.cn, key=key, extra=extra,
        not_before=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5),
    )  # fmt: skip
    if spec.value is not None and spec.twice:  # cryptography refuses to build it: swap the OID
        tbs = cert.tbs_certificate_bytes
        old, new = _oid_der(PLACEHOLDER), _oid_der(ALBATROSS)
        assert tbs.count(old) == 1
        cert = resign(cert, tbs.replace(old, new), pki.root_key)
    return Identity([cert], key)


def _oid_der(oid: x509.ObjectIdentifier) -> bytes:
    arcs = [int(a) for a in oid.dotted_string.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.insert(0, 0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(chunk)
    return b"\x06" + _der_length(len(body)) + bytes(body)


# -- one exchange ------------------------------------------------------------------------


async def _send(stream: trio.abc.Stream, data: bytes) -> bool:
    """Send unless the endpoint already closed; False then."""
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return False
    return True


async def exchange(h: Harness, identity: Identity, sent: list[bytes]) -> tuple[str, list[object]]:
    """('alert', []) for a refused handshake, ('reply', payloads), or ('silence', payloads).

    The client is an ``ssl.SSLObject`` driven by hand, so that a send the endpoint no
    longer reads (it answered already) does not keep the client from reading the answer.
    """
    server_side, client_side = trio.testing.memory_stream_pair()
    h.nursery.start_soon(h.endpoint.handle, server_side, "fuzz")
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = h.pki.client(identity).wrap_bio(incoming, outgoing, server_side=False)
    while True:
        try:
            client.do_handshake()
            break
        except ssl.SSLWantReadError:
            await _send(client_side, outgoing.read())
            data = await client_side.receive_some()
            if not data:
                return "silence", []
            incoming.write(data)
    sending = await _send(client_side, outgoing.read())  # the client's Finished
    for data in sent:
        client.write(data)
        sending = sending and await _send(client_side, outgoing.read())
    decoder = FrameDecoder(1 << 26)
    payloads: list[object] = []
    failure = ""
    while len(payloads) < 100 and not failure:
        data = bytes(await client_side.receive_some())
        if data:
            incoming.write(data)
        else:
            incoming.write_eof()
        try:
            while chunk := client.read(65536):
                decoder.feed(chunk)
            failure = "closed"  # b"": close_notify
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:  # close_notify
            failure = "closed"
        except ssl.SSLError as exc:
            failure = str(exc)
        payloads.extend(decode_message(item).payload for item in decoder.frames())  # type: ignore[arg-type]
    await trio.aclose_forcefully(client_side)
    if payloads and isinstance(payloads[-1], (Failure, *SUCCESS_TYPES)):
        return "reply", payloads
    if not payloads and "ALERT" in failure:
        return "alert", []
    return "silence", payloads


async def one_example(tmp_path: Path, pki: Pki, key: profiles.PrivateKey, spec: LeafSpec,
                      sent: list[bytes]) -> None:  # fmt: skip
    async with (
        open_fake_daemon(BEHAVIOURS) as daemon,
        open_harness(tmp_path, daemon.socket_dir, pki=pki) as h,
    ):
        outcome, payloads = await exchange(h, make_leaf(pki, key, spec), sent)
        assert outcome != "silence", (spec, sent, payloads)
        alive, _ = await exchange(h, pki.leaf("alive", UnikernelInfo()), [])
        assert alive == "reply"  # the endpoint still serves


extension_value = st.one_of(
    st.none(),
    st.sampled_from(ENCODED),
    st.binary(max_size=48),
    st.sampled_from(ENCODED).flatmap(lambda v: st.integers(0, len(v) - 1).map(lambda n: v[:n])),
)
leaf_spec = st.builds(
    LeafSpec,
    value=extension_value,
    twice=st.booleans(),
    critical=st.booleans(),
    unknown=st.one_of(st.none(), st.booleans()),
    cn=st.sampled_from([".", ":", "x", "a b", "UPPER", "-"]),
)
after_handshake = st.lists(
    st.one_of(
        st.binary(min_size=1, max_size=40).map(frame),
        st.just(end_marker()),
        st.binary(min_size=1, max_size=40),  # not framed
        st.just(b"\x7f\xff\xff\xff"),  # a 2 GiB frame announced
    ),
    max_size=4,
)


def _property(tmp_path: Path, max_examples: int) -> None:
    pki = Pki(tmp_path)
    key = profiles.generate_key()

    @settings(max_examples=max_examples, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])  # fmt: skip
    @given(spec=leaf_spec, sent=after_handshake)
    def check(spec: LeafSpec, sent: list[bytes]) -> None:
        trio.run(
            one_example, tmp_path, pki, key, spec, sent,
            clock=trio.testing.MockClock(autojump_threshold=0),
        )  # fmt: skip

    check()


def test_every_request_gets_a_reply(tmp_path: Path) -> None:
    _property(tmp_path, 30)


@pytest.mark.slow
def test_every_request_gets_a_reply_long(tmp_path: Path) -> None:
    _property(tmp_path, 1500)


# -- the case that escaped: the albatross extension twice ------------------------------


async def test_a_leaf_with_the_albatross_extension_twice_is_refused(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    spec = LeafSpec(ENCODED[0], twice=True, critical=False, unknown=None, cn="x")
    identity = make_leaf(pki, profiles.generate_key(), spec)
    async with (
        open_fake_daemon(BEHAVIOURS) as daemon,
        open_harness(tmp_path, daemon.socket_dir, pki=pki) as h,
    ):
        outcome, payloads = await exchange(h, identity, [])
        assert daemon.connections == []
    assert outcome == "reply"
    assert payloads == [
        Failure(
            f"certificate not acceptable: CN=x: the extension {EXTENSION_OID} appears more"
            " than once"
        )
    ]


# -- whatever escapes is answered: the catch-all ------------------------------------


@pytest.mark.parametrize("where", ["authorize", "serve_request"])
async def test_an_unexpected_exception_is_answered_and_logged_with_its_traceback(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    where: str,
) -> None:
    caplog.set_level(logging.INFO, "albatross.endpoint")

    def bug(*args: object) -> object:
        raise KeyError("a bug")

    monkeypatch.setattr(f"tlsendpoint.server.{where}", bug)
    pki = Pki(tmp_path)
    async with (
        open_fake_daemon(BEHAVIOURS) as daemon,
        open_harness(tmp_path, daemon.socket_dir, pki=pki) as h,
    ):
        messages = await h.run(pki.leaf("x", UnikernelInfo()))
    (reply,) = messages
    assert reply.payload == Failure("internal error: KeyError: 'a bug'")
    # the header: the request's once it is known, albatross's ":" before
    assert str(reply.header.name) == (":x" if where == "serve_request" else ":")
    traceback, line = [r for r in caplog.records if r.name == "albatross.endpoint"]
    assert traceback.getMessage() == "internal error while serving test-peer"
    assert traceback.exc_info is not None and traceback.exc_info[0] is KeyError
    assert "internal error: KeyError: 'a bug'" in line.getMessage()
