"""sign_csr: albatross's decisions for each kind of CSR, positive and negative."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import crypto

from ca.profiles import generate_key, intermediate, leaf, make_csr, root_ca, server_cert, sign_csr
from core.certs import albatross_command, common_name, policy_of
from core.errors import PolicyError, UsageError
from core.wire import (
    NetIf,
    Policy,
    PolicyAdd,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelDestroy,
)
from tests.ca.helpers import CERTS, NOW, ca_of, ext_layout, load_certs, load_csr, verify

ALICE = Policy(2, frozenset({0}), 64, 100, frozenset({"service"}))


def _days(cert: x509.Certificate) -> dt.timedelta:
    return cert.not_valid_after_utc - cert.not_valid_before_utc


def _is_ca(cert: x509.Certificate) -> bool:
    return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_policy_csr_becomes_intermediate_within_parent() -> None:
    alice, alice_key = ca_of("alice")
    bob = sign_csr(load_csr(CERTS / "ca/bob.req"), alice, alice_key, NOW)
    assert _is_ca(bob)
    assert policy_of(bob) == policy_of(load_csr(CERTS / "ca/bob.req"))
    assert _days(bob) == dt.timedelta(days=365, seconds=10)
    assert bob.subject == load_csr(CERTS / "ca/bob.req").subject
    verify([bob, alice], [ca_of("root")[0]], NOW)


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (
            Policy(5, frozenset({0}), 64, 100, frozenset({"service"})),
            "policy above allows 2 unikernels, which is fewer than 5",
        ),
        (
            Policy(1, frozenset({0}), 128, 100, frozenset({"service"})),
            "policy above allows 64 MB memory, which is fewer than 128 MB",
        ),
        (
            Policy(1, frozenset({0, 1}), 64, 100, frozenset({"service"})),
            "policy above does not allow CPUids 1",
        ),
        (
            Policy(1, frozenset({0}), 64, 100, frozenset({"other"})),
            "policy above allows bridge(s) service, which is not a superset of other",
        ),
        (
            Policy(1, frozenset({0}), 64, 200, frozenset({"service"})),
            "policy above allows 100 MB block storage, which is fewer than 200 MB",
        ),
    ],
)
def test_policy_csr_larger_than_parent_is_refused(policy: Policy, message: str) -> None:
    alice, alice_key = ca_of("alice")
    csr = make_csr(generate_key(), "carol", PolicyAdd(policy))
    with pytest.raises(PolicyError) as caught:
        sign_csr(csr, alice, alice_key, NOW)
    assert caught.value.message == message


def test_unusable_policy_is_refused() -> None:
    root, root_key = ca_of("root")
    csr = make_csr(generate_key(), "zed", PolicyAdd(Policy(0, frozenset({0}), 64)))
    with pytest.raises(UsageError, match="Unusable policy with no unikernels"):
        sign_csr(csr, root, root_key, NOW)


def test_root_signs_any_usable_policy() -> None:
    root, root_key = ca_of("root")
    big = Policy(1000, frozenset(range(64)), 1 << 20, None, frozenset({"a", "b"}))
    cert = sign_csr(make_csr(generate_key(), "big", PolicyAdd(big)), root, root_key, NOW)
    assert policy_of(cert) == big


def test_explicit_issuer_policy_overrides_the_certificate() -> None:
    root, root_key = ca_of("root")
    csr = make_csr(generate_key(), "x", PolicyAdd(ALICE))
    with pytest.raises(PolicyError, match="fewer than 2"):
        sign_csr(csr, root, root_key, NOW, issuer_policy=Policy(1, frozenset({0}), 64, 100))


def _create(
    memory: int = 16, cpus: frozenset[int] = frozenset({0}), nets: frozenset[NetIf] = frozenset()
) -> UnikernelCreate:
    return UnikernelCreate(UnikernelConfig(image=b"img", memory=memory, cpuids=cpus, bridges=nets))


def test_command_csr_becomes_one_day_leaf() -> None:
    alice, alice_key = ca_of("alice")
    cert = sign_csr(make_csr(generate_key(), "a2", _create()), alice, alice_key, NOW)
    assert not _is_ca(cert)
    assert _days(cert) == dt.timedelta(days=1, seconds=10)
    assert ext_layout(cert)[-1] == ("2.5.29.37", True)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert albatross_command(cert) == _create()


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (_create(memory=128), "128 MB memory assigned to unikernel exceeds policy (64MB)"),
        (
            _create(cpus=frozenset({1})),
            "the CPUids 1 requested by the unikernel are not allowed by policy",
        ),
        (
            _create(nets=frozenset({NetIf("service", "other")})),
            "Bridge(s) other not allowed by policy (available: service)",
        ),
    ],
)
def test_create_csr_must_fit_the_signer_policy(command: UnikernelCreate, message: str) -> None:
    alice, alice_key = ca_of("alice")
    with pytest.raises(PolicyError) as caught:
        sign_csr(make_csr(generate_key(), "a3", command), alice, alice_key, NOW)
    assert caught.value.message == message


def test_other_command_csr_is_not_checked_against_policy() -> None:
    alice, alice_key = ca_of("alice")
    cert = sign_csr(
        make_csr(generate_key(), "a2", UnikernelDestroy()), alice, alice_key, NOW, days=3
    )
    assert _days(cert) == dt.timedelta(days=3, seconds=10)


def test_csr_without_extension_gets_server_profile() -> None:
    root, root_key = ca_of("root")
    key = generate_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "host")]))
        .sign(key, None)
    )
    cert = sign_csr(csr, root, root_key, NOW)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert _days(cert) == dt.timedelta(days=365, seconds=10)
    assert albatross_command(cert) is None


def test_tampered_csr_is_refused() -> None:
    der = bytearray(make_csr(generate_key(), "x", UnikernelDestroy()).public_bytes(Encoding.DER))
    der[-1] ^= 1  # flip a bit of the signature
    root, root_key = ca_of("root")
    with pytest.raises(UsageError, match="self-signature does not verify"):
        sign_csr(x509.load_der_x509_csr(bytes(der)), root, root_key, NOW)


def test_issuer_key_must_match_issuer_certificate() -> None:
    root, _ = ca_of("root")
    with pytest.raises(UsageError, match="Public key of certificate doesn't match private key"):
        sign_csr(make_csr(generate_key(), "x", UnikernelDestroy()), root, generate_key(), NOW)


def test_signed_intermediate_can_sign_further() -> None:
    root, root_key = ca_of("root")
    key = generate_key("p384")
    sub = intermediate(root, root_key, key.public_key(), "op", ALICE, NOW)
    below = sign_csr(
        make_csr(generate_key(), "friend", PolicyAdd(Policy(1, frozenset({0}), 32))), sub, key, NOW
    )
    verify([below, sub], [root], NOW)


@pytest.mark.parametrize("name", ["alice", "bob", "dave", "Dave", "erin"])
def test_captured_csrs_sign_to_the_captured_certificates(name: str) -> None:
    captured = load_certs(CERTS / f"ca/{name}.pem")[0]
    issuer_cn = common_name(captured.issuer)
    issuer, issuer_key = ca_of("root" if issuer_cn == "ca" else str(issuer_cn))
    mine = sign_csr(load_csr(CERTS / f"ca/{name}.req"), issuer, issuer_key, NOW)
    assert mine.subject.public_bytes() == captured.subject.public_bytes()
    assert mine.issuer.public_bytes() == captured.issuer.public_bytes()
    assert mine.public_key() == captured.public_key()
    assert ext_layout(mine) == ext_layout(captured)
    assert [e.value for e in mine.extensions] == [e.value for e in captured.extensions]
    assert _days(mine) == _days(captured)


# -- every profile: the positive check and its negative twins ------------------


def _issued(kind: str) -> tuple[x509.Certificate, list[x509.Certificate], x509.Certificate]:
    """(certificate, chain above it, trust anchor) for each profile, issued at NOW."""
    root, root_key = ca_of("root")
    key = generate_key()
    if kind == "server":
        return server_cert(root, root_key, key.public_key(), "server", NOW), [], root
    if kind == "intermediate":
        return intermediate(root, root_key, key.public_key(), "x", ALICE, NOW), [], root
    sub = intermediate(root, root_key, key.public_key(), "x", ALICE, NOW)
    return leaf(sub, key, generate_key().public_key(), "y", UnikernelDestroy(), NOW), [sub], root


@pytest.mark.parametrize("kind", ["server", "intermediate", "leaf"])
def test_profile_validity_twins(kind: str) -> None:
    cert, chain, anchor = _issued(kind)
    verify([cert, *chain], [anchor], NOW)  # positive
    verify([cert, *chain], [anchor], cert.not_valid_after_utc - dt.timedelta(seconds=1))
    with pytest.raises(crypto.X509StoreContextError, match="expired"):
        verify([cert, *chain], [anchor], cert.not_valid_after_utc + dt.timedelta(seconds=1))
    with pytest.raises(crypto.X509StoreContextError, match="not yet valid"):
        verify([cert, *chain], [anchor], NOW - dt.timedelta(seconds=11))
    stranger = root_ca(generate_key(), "ca", NOW)
    with pytest.raises(crypto.X509StoreContextError):
        verify([cert, *chain], [stranger], NOW)


def _tlv(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 128:
        return bytes([tag, size]) + body
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + body


def test_sha1_csr_is_refused_sha256_twin_accepted() -> None:
    # cryptography no longer signs with SHA-1, so the CSR is assembled by hand.
    root, root_key = ca_of("root")
    key = generate_key("rsa2048")
    assert isinstance(key, rsa.RSAPrivateKey)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old")])
    modern = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    assert sign_csr(modern, root, root_key, NOW).subject == name
    tbs = modern.tbs_certrequest_bytes
    signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    sha1_rsa = _tlv(0x30, bytes.fromhex("06092a864886f70d010105") + b"\x05\x00")
    old = x509.load_der_x509_csr(_tlv(0x30, tbs + sha1_rsa + _tlv(0x03, b"\x00" + signature)))
    assert isinstance(old.signature_hash_algorithm, hashes.SHA1)
    with pytest.raises(UsageError, match="SHA"):
        sign_csr(old, root, root_key, NOW)
