"""The pure chain -> request decision: albatross's derivation, every refusal, the vectors."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import CertificatePoliciesOID, ExtendedKeyUsageOID
from hypothesis import given, settings
from hypothesis import strategies as st

from ca import profiles
from core.authorize import MAX_CHAIN, Refusal, Request, authorize
from core.routing import ROUTES, route
from core.wire import (
    BlockAdd,
    BlockDump,
    BlockInfo,
    BlockSet,
    Command,
    ConsoleAdd,
    ConsoleListInactive,
    ConsoleSubscribe,
    Name,
    Payload,
    Policy,
    PolicyAdd,
    PolicyInfo,
    PolicyRemove,
    StatsAdd,
    StatsInitial,
    StatsRemove,
    StatsSubscribe,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelGet,
    UnikernelInfo,
    UnikernelRestart,
    decode_message,
)
from tests.endpoint.pki import NOW, POLICY, Pki, custom_cert
from tests.vectors import CASES, CERTS, case_frames

Cert = tuple[x509.Certificate, profiles.PrivateKey]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def _authorize_leaf(
    pki: Pki, cn: str | None, command: Command | None, via: Sequence[Cert] = ()
) -> Request:
    issuer = via[0] if via else (pki.root, pki.root_key)
    leaf, _ = custom_cert(issuer, cn, command=command)
    return authorize([leaf, *(c for c, _ in via)])


# -- derivation ------------------------------------------------------------


def test_root_leaf_dot_names_the_root(pki: Pki) -> None:
    request = authorize(pki.leaf(".", UnikernelInfo()).chain)
    assert request == Request(Name((), None), (), 5, UnikernelInfo())


@pytest.mark.parametrize("cn", [".", ":"])
def test_dot_and_colon_mean_the_path(pki: Pki, cn: str) -> None:
    alice = pki.sub_ca("alice")
    assert authorize(pki.leaf(cn, UnikernelInfo(), via=[alice]).chain).name == Name(("alice",))


def test_one_level_of_delegation(pki: Pki) -> None:
    alice = pki.sub_ca("alice")
    request = authorize(pki.leaf("A1", UnikernelDestroy(), via=[alice]).chain)
    assert request.name == Name(("alice",), "a1")  # lower-cased
    assert request.policies == ((Name(("alice",)), POLICY),)
    assert request.command == UnikernelDestroy()


def test_policies_come_deepest_first(pki: Pki) -> None:
    small = POLICY.__class__(2, frozenset({0}), 64, None, frozenset())
    alice = pki.sub_ca("alice")
    bob = pki.sub_ca("bob", small, parent=alice)
    request = authorize(pki.leaf("b1", UnikernelInfo(), via=[bob, alice]).chain)
    assert request.name == Name(("alice", "bob"), "b1")
    assert request.policies == (
        (Name(("alice", "bob")), small),
        (Name(("alice",)), POLICY),
    )


def test_upper_case_sub_ca_is_lower_cased(pki: Pki) -> None:
    dave = pki.sub_ca("Dave")
    request = authorize(pki.leaf("u1", UnikernelInfo(), via=[dave]).chain)
    assert request.name == Name(("dave",), "u1")
    assert request.policies[0][0] == Name(("dave",))


def test_certificates_without_extension_are_skipped(pki: Pki) -> None:
    alice = pki.sub_ca("alice")
    chain = [*pki.leaf("a1", UnikernelInfo(), via=[alice]).chain, pki.root]
    assert authorize(chain).name == Name(("alice",), "a1")


@pytest.mark.parametrize(
    "command", [UnikernelInfo(), PolicyInfo(), BlockInfo(), ConsoleListInactive()]
)
def test_leaf_without_cn_names_the_path(pki: Pki, command: Command) -> None:
    alice = pki.sub_ca("alice")
    assert _authorize_leaf(pki, None, command, [alice]).name == Name(("alice",))


def test_chain_of_nine_is_accepted(pki: Pki) -> None:
    level = pki.sub_ca("l0")
    cas = [level]
    for i in range(1, MAX_CHAIN - 2):
        level = pki.sub_ca(f"l{i}", parent=level)
        cas.insert(0, level)
    chain = pki.leaf("x", UnikernelInfo(), via=cas).chain
    assert len(chain) == 9
    assert authorize(chain).name == Name(tuple(f"l{i}" for i in range(8)), "x")


@pytest.mark.parametrize(
    "command",
    [
        ConsoleSubscribe(count=10),
        ConsoleListInactive(),
        StatsSubscribe(),
        UnikernelInfo(),
        UnikernelCreate(UnikernelConfig(image=b"\x7fELF")),
        UnikernelCreate(UnikernelConfig(image=b""), force=True),
        UnikernelDestroy(),
        UnikernelGet(0),
        UnikernelRestart(None),
        PolicyInfo(),
        BlockInfo(),
        BlockAdd(10),
        BlockSet(True),
        BlockDump(9),
    ],
)
def test_allowed_commands(pki: Pki, command: Command) -> None:
    assert authorize(pki.leaf("n", command).chain).command == command


def test_allow_list_matches_albatross() -> None:
    refused = {cls.__name__ for cls, r in ROUTES.items() if not r.leaf_allowed}
    assert refused == {
        "ConsoleAdd",
        "StatsAdd",
        "StatsRemove",
        "StatsInitial",
        "PolicyAdd",
        "PolicyRemove",
    }


# -- refusals ------------------------------------------------------------------


def refusal(pki: Pki, chain: list[x509.Certificate]) -> str:
    with pytest.raises(Refusal) as info:
        authorize(chain)
    return info.value.message


@pytest.mark.parametrize(
    ("command", "text"),
    [
        (ConsoleAdd(10), "console add"),
        (StatsAdd("vmm", 1), "stats add"),
        (StatsRemove(), "stats remove"),
        (StatsInitial(), "stats initial"),
        (PolicyAdd(POLICY), "policy add"),
        (PolicyRemove(), "policy remove"),
    ],
)
def test_disallowed_leaf_commands(pki: Pki, command: Command, text: str) -> None:
    reason = refusal(pki, pki.leaf("n", command).chain)
    assert reason.startswith(f"unexpected command: {text} is not accepted from a leaf")
    assert "unikernel create" in reason  # it says what is allowed


def test_chain_of_ten_is_too_long(pki: Pki) -> None:
    level = pki.sub_ca("l0")
    cas = [level]
    for i in range(1, MAX_CHAIN - 1):
        level = pki.sub_ca(f"l{i}", parent=level)
        cas.insert(0, level)
    chain = pki.leaf("x", UnikernelInfo(), via=cas).chain
    assert refusal(pki, chain) == "certificate chain too long: 10 certificates, at most 9"


def test_empty_chain(pki: Pki) -> None:
    assert refusal(pki, []).startswith("empty chain")


def test_leaf_without_extension(pki: Pki) -> None:
    leaf, _ = custom_cert((pki.root, pki.root_key), "x")
    assert refusal(pki, [leaf]) == "leaf certificate does not contain an albatross extension"


def test_leaf_extension_garbage(pki: Pki) -> None:
    leaf, _ = custom_cert((pki.root, pki.root_key), "x", raw_extension=b"\x30\x03\x02\x01")
    assert refusal(pki, [leaf]).startswith(
        "couldn't parse albatross extension of leaf certificate CN=x:"
    )


def test_leaf_extension_other_version(pki: Pki) -> None:
    # version 4, unikernel info: albatross decodes only version 5
    leaf, _ = custom_cert(
        (pki.root, pki.root_key), "x", raw_extension=bytes.fromhex("3009020104a304b3020500")
    )
    reason = refusal(pki, [leaf])
    assert reason.startswith("couldn't parse albatross extension") and "version" in reason


@pytest.mark.parametrize("cn", ["", "a b", "a_b", "-x", "x" * 64])
def test_leaf_cn_not_a_label(pki: Pki, cn: str) -> None:
    leaf, _ = (
        custom_cert((pki.root, pki.root_key), cn, command=UnikernelInfo()) if cn else _empty_cn(pki)
    )
    reason = refusal(pki, [leaf])
    assert reason.startswith("invalid label") and reason.endswith(
        "in the CN of the leaf certificate"
    )


def _empty_cn(pki: Pki) -> Cert:
    # cryptography refuses an empty CN unless told not to validate; albatross-client writes one
    key = profiles.generate_key()
    cert = profiles.leaf(pki.root, pki.root_key, key.public_key(), "", UnikernelInfo(), NOW)
    return cert, key


@pytest.mark.parametrize(
    ("command", "text"),
    [
        (BlockAdd(1), "block add may not have an empty name"),
        (BlockSet(False), "block set may not have an empty name"),
        (BlockDump(0), "block dump may not have an empty name"),
    ],
)
def test_leaf_without_cn_for_named_commands(pki: Pki, command: Command, text: str) -> None:
    leaf, _ = custom_cert((pki.root, pki.root_key), None, command=command)
    assert refusal(pki, [leaf]) == text + " (the leaf certificate has no CN)"


def test_intermediate_with_other_command(pki: Pki) -> None:
    ca, key = custom_cert((pki.root, pki.root_key), "alice", command=UnikernelInfo(), ca=True)
    leaf, _ = custom_cert((ca, key), "x", command=UnikernelInfo())
    reason = refusal(pki, [leaf, ca])
    assert reason.startswith("unexpected wire unikernel info in intermediate certificate CN=alice")


def test_intermediate_without_cn(pki: Pki) -> None:
    ca, key = custom_cert((pki.root, pki.root_key), None, command=PolicyAdd(POLICY), ca=True)
    leaf, _ = custom_cert((ca, key), "x", command=UnikernelInfo())
    assert refusal(pki, [leaf, ca]).startswith("policy add may not have an empty name")


def test_intermediate_cn_not_a_label(pki: Pki) -> None:
    ca, key = custom_cert((pki.root, pki.root_key), "a:b", command=PolicyAdd(POLICY), ca=True)
    leaf, _ = custom_cert((ca, key), "x", command=UnikernelInfo())
    reason = refusal(pki, [leaf, ca])
    assert reason.startswith("invalid label 'a:b'") and "intermediate certificate CN=a:b" in reason


def test_intermediate_extension_garbage(pki: Pki) -> None:
    ca, key = custom_cert((pki.root, pki.root_key), "alice", raw_extension=b"\x05\x00", ca=True)
    leaf, _ = custom_cert((ca, key), "x", command=UnikernelInfo())
    assert refusal(pki, [leaf, ca]).startswith(
        "couldn't parse albatross extension of intermediate certificate CN=alice"
    )


# -- ocaml-x509 rules OpenSSL does not apply ------------------------------------------


def _ec_root() -> Cert:
    key = ec.generate_private_key(ec.SECP256R1())
    return custom_cert(None, "ecroot", key=key, ca=True)


def _ku(**bits: bool) -> x509.KeyUsage:
    names = [
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    ]
    return x509.KeyUsage(**{n: bits.get(n, False) for n in names})


CHAIN_RULES: dict[str, tuple[Callable[[Cert], list[x509.Certificate]], str]] = {
    "sha1": (
        lambda root: [custom_cert(root, "x", command=UnikernelInfo(), hash_alg=hashes.SHA1())[0]],
        "signed with SHA1",
    ),
    "sha224": (
        lambda root: [custom_cert(root, "x", command=UnikernelInfo(), hash_alg=hashes.SHA224())[0]],
        "signed with SHA224",
    ),
    "leaf ku": (
        lambda root: [
            custom_cert(root, "x", command=UnikernelInfo(), key_usage=_ku(key_encipherment=True))[0]
        ],
        "keyUsage lacks digitalSignature",
    ),
    "leaf eku": (
        lambda root: [
            custom_cert(root, "x", command=UnikernelInfo(), eku=[ExtendedKeyUsageOID.SERVER_AUTH])[
                0
            ]
        ],
        "extendedKeyUsage lacks clientAuth",
    ),
    "leaf ca": (
        lambda root: [custom_cert(root, "x", command=UnikernelInfo(), ca=True)[0]],
        "may not be a CA",
    ),
    "leaf name constraints": (
        lambda root: [
            custom_cert(
                root,
                "x",
                command=UnikernelInfo(),
                extra=[(x509.NameConstraints([x509.DNSName("example.org")], None), True)],
            )[0]
        ],
        "may not carry nameConstraints",
    ),
    "critical policies": (
        lambda root: [
            custom_cert(
                root,
                "x",
                command=UnikernelInfo(),
                extra=[
                    (
                        x509.CertificatePolicies(
                            [x509.PolicyInformation(x509.ObjectIdentifier("1.2.3"), None)]
                        ),
                        True,
                    )
                ],
            )[0]
        ],
        "critical certificatePolicies without anyPolicy",
    ),
    "ca without ku": (
        lambda root: _under(
            custom_cert(root, "sub", command=PolicyAdd(POLICY), ca=True, key_usage=None)
        ),
        "CN=sub: a CA certificate needs a keyUsage extension",
    ),
    "ca ku without certsign": (
        lambda root: _under(
            custom_cert(
                root,
                "sub",
                command=PolicyAdd(POLICY),
                ca=True,
                key_usage=_ku(digital_signature=True, crl_sign=True),
            )
        ),
        "CN=sub: keyUsage lacks keyCertSign",
    ),
    "ca eku clientauth": (
        lambda root: _under(
            custom_cert(
                root,
                "sub",
                command=PolicyAdd(POLICY),
                ca=True,
                eku=[ExtendedKeyUsageOID.CLIENT_AUTH],
            )
        ),
        "CN=sub: a CA's extendedKeyUsage must include serverAuth",
    ),
    # the same CA rules one level further up: a sound sub-CA under a flawed one
    "upper ca without ku": (
        lambda root: _two_under(
            custom_cert(root, "top", command=PolicyAdd(POLICY), ca=True, key_usage=None)
        ),
        "CN=top: a CA certificate needs a keyUsage extension",
    ),
    "upper ca ku without certsign": (
        lambda root: _two_under(
            custom_cert(
                root,
                "top",
                command=PolicyAdd(POLICY),
                ca=True,
                key_usage=_ku(digital_signature=True, crl_sign=True),
            )
        ),
        "CN=top: keyUsage lacks keyCertSign",
    ),
    "upper ca eku clientauth": (
        lambda root: _two_under(
            custom_cert(
                root,
                "top",
                command=PolicyAdd(POLICY),
                ca=True,
                eku=[ExtendedKeyUsageOID.CLIENT_AUTH],
            )
        ),
        "CN=top: a CA's extendedKeyUsage must include serverAuth",
    ),
}


def _under(ca: Cert) -> list[x509.Certificate]:
    leaf, _ = custom_cert(ca, "x", command=UnikernelInfo())
    return [leaf, ca[0]]


def _two_under(top: Cert) -> list[x509.Certificate]:
    """leaf < sub (a sound CA) < *top*: the flaw sits one level above the leaf's issuer."""
    sub = custom_cert(top, "sub", command=PolicyAdd(POLICY), ca=True)
    leaf, _ = custom_cert(sub, "x", command=UnikernelInfo())
    return [leaf, sub[0], top[0]]


@pytest.mark.parametrize("case", sorted(CHAIN_RULES))
def test_chain_rules(case: str) -> None:
    make, text = CHAIN_RULES[case]
    chain = make(_ec_root())
    with pytest.raises(Refusal) as info:
        authorize(chain)
    assert info.value.message.startswith("certificate not acceptable: ")
    assert text in info.value.message
    # only the flawed certificate is named: the sound ones around it pass
    assert info.value.message.count("CN=") == 1, info.value.message


def test_critical_any_policy_is_fine() -> None:
    any_policy = x509.CertificatePolicies(
        [x509.PolicyInformation(CertificatePoliciesOID.ANY_POLICY, None)]
    )
    leaf, _ = custom_cert(_ec_root(), "x", command=UnikernelInfo(), extra=[(any_policy, True)])
    assert authorize([leaf]).name == Name((), "x")


def test_expired_is_not_a_pure_concern() -> None:
    # validity is OpenSSL's job at handshake time; the pure decision takes no clock
    old = NOW - dt.timedelta(days=30)
    leaf, _ = custom_cert(
        _ec_root(),
        "x",
        command=UnikernelInfo(),
        not_before=old,
        not_after=old + dt.timedelta(days=1),
    )
    assert authorize([leaf]).name == Name((), "x")


# -- the captured vectors: what the real endpoint sent to the daemon -------------------


def _vector_leaves() -> list[str]:
    return sorted(p.name[: -len(".chain.pem")] for p in (CERTS / "leaf").glob("*.chain.pem"))


@pytest.mark.parametrize("leaf_id", _vector_leaves())
def test_vector_leaf_gives_the_captured_daemon_messages(leaf_id: str) -> None:
    meta = json.loads((CERTS / "leaf" / f"{leaf_id}.json").read_text())
    chain = x509.load_pem_x509_certificates((CERTS / "leaf" / f"{leaf_id}.chain.pem").read_bytes())
    request = authorize(chain)
    sent = [f for f in case_frames(CASES / meta["source_case"]) if f.direction == "to_daemon"]
    expected: list[tuple[Name, Payload]] = [
        (name, PolicyAdd(policy)) for name, policy in request.policies
    ]
    expected.append((request.name, request.command))
    got = []
    for f in sent[: len(expected)]:
        message = decode_message(f.body)
        got.append((message.header.name, message.payload))
    assert got == expected


def test_policies_in_the_chain_must_nest(pki: Pki) -> None:
    small = Policy(1, frozenset({0}), 64, None, frozenset())
    big = Policy(1, frozenset({0}), 128, None, frozenset())
    alice = pki.sub_ca("alice", small)
    bob = pki.sub_ca("bob", big, parent=alice)
    reason = refusal(pki, pki.leaf("x", UnikernelInfo(), via=[bob, alice]).chain)
    assert reason == (
        "policy above allows 64 MB memory, which is fewer than 128 MB: the policy of alice:bob:"
        " in the certificate chain is not within the policy of alice:"
    )
    # equal is fine, and a CA without extension in between does not break the nesting check
    assert authorize(
        pki.leaf("x", UnikernelInfo(), via=[pki.sub_ca("c", small, parent=alice), alice]).chain
    )


def test_nesting_is_checked_at_every_level(pki: Pki) -> None:
    # alice 5 > bob 2 > carol 3: carol fits under alice but not under bob, her direct issuer
    def unikernels(count: int) -> Policy:
        return Policy(count, frozenset({0}), 64, None, frozenset())

    alice = pki.sub_ca("alice", unikernels(5))
    bob = pki.sub_ca("bob", unikernels(2), parent=alice)
    carol = pki.sub_ca("carol", unikernels(3), parent=bob)
    reason = refusal(pki, pki.leaf("c1", UnikernelInfo(), via=[carol, bob, alice]).chain)
    assert reason == (
        "policy above allows 2 unikernels, which is fewer than 3: the policy of"
        " alice:bob:carol: in the certificate chain is not within the policy of alice:bob:"
    )
    # the same depth with carol inside bob is accepted, policies deepest first
    fits = pki.sub_ca("carol", unikernels(2), parent=bob)
    request = authorize(pki.leaf("c1", UnikernelInfo(), via=[fits, bob, alice]).chain)
    assert [str(name) for name, _ in request.policies] == [
        "alice:bob:carol:",
        "alice:bob:",
        "alice:",
    ]


def test_negative_console_count_is_refused(pki: Pki) -> None:
    reason = refusal(pki, pki.leaf("t", ConsoleSubscribe(count=-1)).chain)
    assert reason.startswith("console subscribe with a negative count (-1) is refused")
    assert authorize(pki.leaf("t", ConsoleSubscribe(count=0)).chain).command == ConsoleSubscribe(
        count=0
    )


_FUZZ_ROOT = _ec_root()


@settings(max_examples=150, deadline=None)
@given(
    value=st.one_of(
        st.binary(max_size=64),
        # mostly-valid prefixes: a SEQUENCE with version 5 and random content
        st.binary(max_size=40).map(lambda b: bytes([0x30, len(b) + 3, 0x02, 0x01, 0x05]) + b),
    ),
    cn=st.one_of(
        st.none(), st.text(min_size=1, max_size=30).filter(lambda s: len(s.encode()) <= 64)
    ),
)
def test_garbage_extensions_give_a_request_or_a_refusal(value: bytes, cn: str | None) -> None:
    leaf, _ = custom_cert(_FUZZ_ROOT, cn, raw_extension=value)
    try:
        request = authorize([leaf])
    except Refusal as refusal:
        assert refusal.message
    else:
        assert route(request.command).leaf_allowed
