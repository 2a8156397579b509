"""Hypothesis through the endpoint's security gate: any leaf (extension bytes, CN, command,
CRL extension) under any delegation gives a request, a Refusal or a Failure payload - never
another exception.  ``pytest -m slow`` runs the long variant."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import trio
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.authorize import Refusal
from core.certs import CRL_EXTENSION_OID
from core.wire import (
    BlockAdd,
    BlockRemove,
    Command,
    Failure,
    Name,
    Payload,
    PolicyInfo,
    StatsSubscribe,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelInfo,
    encode_extension,
)
from tests.endpoint.pki import custom_cert
from tests.security.pki import Ca, policy
from tests.security.rig import now
from tlsendpoint.security.gate import Gate
from tlsendpoint.security.process import Security, SecurityOptions
from tlsendpoint.session import Admit

_CA = Ca(*custom_cert(None, "ca", ca=True))
_ALICE = _CA.delegate("alice", policy(unikernels=2), now=now())
_BOB = _ALICE.delegate("bob", policy(unikernels=1), now=now())

COMMANDS: list[Command] = [
    UnikernelInfo(),
    UnikernelDestroy(),
    PolicyInfo(),
    StatsSubscribe(),
    BlockRemove(),
    BlockAdd(5),
    UnikernelCreate(UnikernelConfig(image=b"x", memory=32)),
]

extension = st.one_of(
    st.sampled_from(COMMANDS).map(encode_extension),
    st.binary(max_size=64),
    st.sampled_from(COMMANDS)
    .map(encode_extension)
    .flatmap(lambda good: st.integers(0, len(good) - 1).map(lambda cut: good[:cut])),
)
cn = st.one_of(st.sampled_from([".", ":", "a1", "", "Alice", "a:b", "-"]), st.text(max_size=20))


async def refused_query(name: Name, command: Command) -> Payload:
    return Failure("no daemon in this test")


def run_gate(security: Security, issuer: Ca, leaf_cn: str, value: bytes, crl: bytes | None) -> None:
    extra = []
    if crl is not None:
        extra.append(
            (x509.UnrecognizedExtension(x509.ObjectIdentifier(CRL_EXTENSION_OID), crl), False)
        )
    try:
        cert, _ = custom_cert(
            (issuer.cert, issuer.key), leaf_cn, raw_extension=value, extra=extra,
            not_before=now() - dt.timedelta(seconds=5),
        )  # fmt: skip
    except ValueError:  # cryptography refuses to build it: nothing a client could send
        return
    gate = Gate(security, "fuzz", refused_query, now())
    try:
        request = trio.run(gate.authorize, [cert, *issuer.chain])
    except Refusal as refusal:
        assert refusal.message and gate.decision == "deny"
        return

    async def run(*, admit: Admit) -> Payload:
        return Failure("the daemon said no")

    payload = trio.run(gate.serve, request, run)
    assert isinstance(payload, Failure), payload
    assert trio.run(gate.close, "done", 0.001) is None


def _property(tmp_path: Path, max_examples: int) -> None:
    crl_dir = tmp_path / "crls"
    crl_dir.mkdir(exist_ok=True)
    security = Security(SecurityOptions(tmp_path / "sec", _CA.cert, crl_dir))

    @settings(max_examples=max_examples, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
    @given(
        issuer=st.sampled_from([_CA, _ALICE, _BOB]),
        leaf_cn=cn,
        value=extension,
        crl=st.one_of(st.none(), st.binary(max_size=40)),
    )
    def check(issuer: Ca, leaf_cn: str, value: bytes, crl: bytes | None) -> None:
        run_gate(security, issuer, leaf_cn, value, crl)

    check()
    security.close()


def test_any_leaf_gives_a_request_or_a_refusal(tmp_path: Path) -> None:
    _property(tmp_path, 60)


@pytest.mark.slow
def test_any_leaf_gives_a_request_or_a_refusal_long(tmp_path: Path) -> None:
    _property(tmp_path, 3000)
