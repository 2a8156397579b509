"""ca.profiles against the captured albatross certificates, plus negative twins."""

from __future__ import annotations

import datetime as dt
import functools
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import crypto

from ca import profiles
from ca.profiles import (
    KEY_TYPES,
    PrivateKey,
    generate_key,
    intermediate,
    leaf,
    make_csr,
    root_ca,
    server_cert,
)
from core.authorize import Refusal, authorize
from core.certs import ALBATROSS_OID, albatross_command, common_name, policy_of
from core.errors import ParseError, UsageError
from core.wire import (
    Policy,
    PolicyAdd,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelInfo,
    encode_extension,
)
from tests.ca.helpers import CERTS, NOW, ca_of, ext_layout, load_cert, load_certs, load_csr, verify

ALICE = Policy(2, frozenset({0}), 64, 100, frozenset({"service"}))
SKI, KU, BC, AKI, EKU, SAN = (
    "2.5.29.14",
    "2.5.29.15",
    "2.5.29.19",
    "2.5.29.35",
    "2.5.29.37",
    ("2.5.29.17"),
)
ALB = "1.3.6.1.4.1.49836.42"


@functools.cache
def key_of(key_type: str) -> PrivateKey:
    return generate_key(key_type)


def lifetime(cert: x509.Certificate) -> dt.timedelta:
    return cert.not_valid_after_utc - cert.not_valid_before_utc


def values(cert: x509.Certificate, oid: str) -> x509.ExtensionType:
    return cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value


# -- the four profiles against the vectors ----------------------------------


def test_root_ca_matches_captured_root() -> None:
    captured = load_cert(CERTS / "ca/root-cacert.pem")
    mine = root_ca(key_of("ed25519"), "ca", NOW)
    assert ext_layout(mine) == ext_layout(captured) == [(KU, True), (BC, True)]
    assert values(mine, KU) == values(captured, KU)
    assert values(mine, BC) == values(captured, BC)
    assert lifetime(mine) == lifetime(captured) == dt.timedelta(days=3650, seconds=10)
    assert mine.not_valid_before_utc == NOW - dt.timedelta(seconds=10)
    assert mine.subject.public_bytes() == captured.subject.public_bytes()  # one UTF8String CN
    assert mine.issuer == mine.subject
    mine.verify_directly_issued_by(mine)


def test_server_cert_matches_captured_server() -> None:
    root, root_key = ca_of("root")
    captured = load_cert(CERTS / "ca/root-server.pem")
    mine = server_cert(root, root_key, key_of("ed25519").public_key(), "server", NOW)
    assert (
        ext_layout(mine)
        == ext_layout(captured)
        == [(SKI, False), (KU, True), (BC, True), (AKI, False), (EKU, True)]
    )
    for oid in (KU, BC, AKI, EKU):  # same issuer key, so the AKI is equal too
        assert values(mine, oid) == values(captured, oid)
    assert values(mine, SKI) == x509.SubjectKeyIdentifier.from_public_key(mine.public_key())
    assert lifetime(mine) == lifetime(captured) == dt.timedelta(days=365, seconds=10)
    assert mine.issuer.public_bytes() == captured.issuer.public_bytes()
    verify([mine], [root], NOW)


def test_server_cert_with_subject_alt_names() -> None:
    root, root_key = ca_of("root")
    mine = server_cert(
        root,
        root_key,
        key_of("ed25519").public_key(),
        "server",
        NOW,
        dns_names=["albatross.example"],
        ips=["192.0.2.1", "2001:db8::1"],
    )
    assert ext_layout(mine)[-1] == (SAN, False)
    san = values(mine, SAN)
    assert isinstance(san, x509.SubjectAlternativeName)
    assert san.get_values_for_type(x509.DNSName) == ["albatross.example"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == [
        "192.0.2.1",
        "2001:db8::1",
    ]


@pytest.mark.parametrize(
    ("dns", "ip", "message"),
    [
        ("bad name", None, "bad server DNS name 'bad name'"),
        (None, "300.1.1.1", "bad server IP address '300.1.1.1'"),
    ],
)
def test_server_cert_refuses_bad_alt_names(dns: str | None, ip: str | None, message: str) -> None:
    root, root_key = ca_of("root")
    with pytest.raises(UsageError, match=message):
        server_cert(
            root,
            root_key,
            key_of("ed25519").public_key(),
            "server",
            NOW,
            dns_names=[dns] if dns else [],
            ips=[ip] if ip else [],
        )


@pytest.mark.parametrize("name", ["alice", "dave", "erin"])
def test_intermediate_matches_captured(name: str) -> None:
    root, root_key = ca_of("root")
    captured = load_cert(CERTS / f"ca/{name}.pem")
    policy = policy_of(captured)
    assert policy is not None
    mine = intermediate(root, root_key, captured.public_key(), name, policy, NOW)  # type: ignore[arg-type]
    assert (
        ext_layout(mine)
        == ext_layout(captured)
        == [(ALB, False), (SKI, False), (KU, True), (BC, True), (AKI, False)]
    )
    for oid in (ALB, SKI, KU, BC, AKI):
        assert values(mine, oid) == values(captured, oid)
    assert lifetime(mine) == lifetime(captured)
    assert mine.subject.public_bytes() == captured.subject.public_bytes()


def test_intermediate_serial_and_start_can_be_pinned() -> None:
    root, root_key = ca_of("root")
    start = NOW - dt.timedelta(days=3)
    mine = intermediate(
        root,
        root_key,
        key_of("ed25519").public_key(),
        "x",
        ALICE,
        NOW,
        days=2,
        serial=0x1234,
        not_before=start,
    )
    assert mine.serial_number == 0x1234
    assert mine.not_valid_before_utc == start
    assert mine.not_valid_after_utc == NOW + dt.timedelta(days=2)


LEAF_VECTORS = sorted(CERTS.glob("leaf/*.json"))
_ISSUER_KEYS = {"ca": "root", "alice": "alice", "bob": "bob"}


@pytest.mark.parametrize("vector", LEAF_VECTORS, ids=lambda p: p.stem)
def test_leaf_matches_captured(vector: Path) -> None:
    info = json.loads(vector.read_text())
    chain = load_certs(vector.with_name(f"{info['id']}.chain.pem"))
    captured, issuer = chain[0], chain[1]
    issuer_cert, issuer_key = ca_of(_ISSUER_KEYS[common_name(issuer.subject) or ""])
    command = albatross_command(captured)
    assert command is not None
    cn = info["leaf"]["subject_cn"]
    mine = leaf(issuer_cert, issuer_key, key_of("ed25519").public_key(), cn, command, NOW)
    assert (
        ext_layout(mine)
        == ext_layout(captured)
        == [(ALB, False), (SKI, False), (KU, True), (BC, True), (AKI, False), (EKU, True)]
    )
    for oid in (ALB, KU, BC, AKI, EKU):
        assert values(mine, oid) == values(captured, oid)
    assert values(mine, ALB).value.hex() == info["leaf"]["albatross_ext_hex"]  # type: ignore[attr-defined]
    assert lifetime(mine) == lifetime(captured) == dt.timedelta(seconds=310)
    assert mine.subject.public_bytes() == captured.subject.public_bytes()
    assert mine.issuer.public_bytes() == captured.issuer.public_bytes()


def test_leaf_vectors_cover_every_captured_issuer() -> None:
    assert len(LEAF_VECTORS) >= 15  # the test above really ran over the vectors


def test_captured_csrs_are_reproduced_byte_for_byte() -> None:
    # Ed25519 signatures are deterministic, so our CSR equals albatross's exactly.
    for name in ("alice", "bob", "dave", "Dave", "erin"):
        captured = load_csr(CERTS / f"ca/{name}.req")
        key = ca_of(name)[1]
        command = albatross_command(captured)
        assert command is not None
        mine = make_csr(key, name, command)
        assert mine.public_bytes(Encoding.DER) == captured.public_bytes(Encoding.DER), name


# -- serials, subjects, key types --------------------------------------------


def test_serials_are_ten_random_positive_octets() -> None:
    serials = {profiles.new_serial() for _ in range(200)}
    assert len(serials) == 200
    assert all(0 < s < 1 << 80 for s in serials)
    assert any(s >= 1 << 79 for s in serials)  # the top bit is used: 11 content octets then


@pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning")  # cryptography on reading
def test_empty_and_long_common_names_are_written_like_albatross() -> None:
    root, root_key = ca_of("root")
    empty = leaf(root, root_key, key_of("ed25519").public_key(), "", UnikernelInfo(), NOW)
    assert empty.subject.public_bytes().hex() == "300b3109300706035504030c00"
    long_cn = "a" * 70
    long_leaf = leaf(root, root_key, key_of("ed25519").public_key(), long_cn, UnikernelInfo(), NOW)
    assert long_leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == long_cn


_HASH = {
    "ed25519": None,
    "p256": hashes.SHA256,
    "p384": hashes.SHA384,
    "p521": hashes.SHA512,
    "rsa2048": hashes.SHA256,
    "rsa4096": hashes.SHA256,
}


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_every_key_type_signs_a_verifiable_chain(key_type: str) -> None:
    ca_key = key_of(key_type)
    root = root_ca(ca_key, "ca", NOW)
    sub_key = key_of(key_type)
    sub = intermediate(root, ca_key, sub_key.public_key(), "alice", ALICE, NOW)
    mine = leaf(sub, sub_key, key_of(key_type).public_key(), "a1", UnikernelDestroy(), NOW)
    expected = _HASH[key_type]
    algorithm = mine.signature_hash_algorithm
    assert (algorithm is None) if expected is None else isinstance(algorithm, expected)
    verify([mine, sub], [root], NOW)
    request = authorize([mine, sub])
    assert str(request.name) == "alice:a1"
    assert request.policies[0][1] == ALICE


def test_unknown_key_type_is_refused() -> None:
    with pytest.raises(UsageError, match="unknown key type 'dsa'"):
        generate_key("dsa")


def test_naive_clock_is_refused() -> None:
    with pytest.raises(UsageError, match="timezone-aware"):
        root_ca(key_of("ed25519"), "ca", NOW.replace(tzinfo=None))


def test_oversized_leaf_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    root, root_key = ca_of("root")
    monkeypatch.setattr(profiles, "MAX_CERT_SIZE", 2000)
    command = UnikernelCreate(UnikernelConfig(image=b"\0" * 2000))
    with pytest.raises(UsageError, match="certificate too big for TLS"):
        leaf(root, root_key, key_of("ed25519").public_key(), "big", command, NOW)


def test_albatross_command_reports_bad_extension() -> None:
    root, root_key = ca_of("root")
    builder = (
        x509.CertificateBuilder()
        .subject_name(root.subject)
        .issuer_name(root.subject)
        .public_key(key_of("ed25519").public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.UnrecognizedExtension(ALBATROSS_OID, b"\x30\x03\x02\x01\x04"), False)
    )
    cert = builder.sign(root_key, None)
    with pytest.raises(ParseError):
        albatross_command(cert)
    assert albatross_command(root) is None
    assert policy_of(root) is None


# -- negative twins of the chain root -> alice -> leaf ------------------------


def _chain() -> tuple[x509.Certificate, list[x509.Certificate]]:
    root = root_ca(key_of("ed25519"), "ca", NOW)
    alice_key = key_of("p256")
    alice = intermediate(root, key_of("ed25519"), alice_key.public_key(), "alice", ALICE, NOW)
    mine = leaf(alice, alice_key, key_of("p384").public_key(), "a1", UnikernelInfo(), NOW)
    return root, [mine, alice]


def test_chain_positive() -> None:
    root, chain = _chain()
    verify(chain, [root], NOW)
    verify(chain, [root], NOW + dt.timedelta(seconds=299))
    assert str(authorize(chain).name) == "alice:a1"


def test_chain_wrong_ca() -> None:
    _, chain = _chain()
    other = root_ca(generate_key(), "ca", NOW)  # same name, other key
    with pytest.raises(crypto.X509StoreContextError, match=r"signature|issuer"):
        verify(chain, [other], NOW)


def test_chain_expired_leaf() -> None:
    root, chain = _chain()
    with pytest.raises(crypto.X509StoreContextError, match="expired"):
        verify(chain, [root], NOW + dt.timedelta(seconds=301))


def test_chain_not_yet_valid() -> None:
    root, chain = _chain()
    with pytest.raises(crypto.X509StoreContextError, match="not yet valid"):
        verify(chain, [root], NOW - dt.timedelta(seconds=11))


def _custom_leaf(
    issuer: x509.Certificate, issuer_key: PrivateKey, exts: list[tuple[x509.ExtensionType, bool]]
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a1")]))
        .issuer_name(issuer.subject)
        .public_key(key_of("ed25519").public_key())
        .serial_number(7)
        .not_valid_before(NOW - dt.timedelta(seconds=10))
        .not_valid_after(NOW + dt.timedelta(seconds=300))
    )
    for ext, critical in exts:
        builder = builder.add_extension(ext, critical)
    return builder.sign(issuer_key, hashes.SHA256())


def test_custom_leaf_with_albatross_usages_is_accepted() -> None:
    # The positive twin of the two tests below: same builder, the right usages.
    root, (_, alice) = _chain()
    command = x509.UnrecognizedExtension(ALBATROSS_OID, encode_extension(UnikernelInfo()))
    usage = x509.KeyUsage(True, False, True, False, False, False, False, False, False)
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    good = _custom_leaf(alice, key_of("p256"), [(command, False), (usage, True), (eku, True)])
    verify([good, alice], [root], NOW)
    assert str(authorize([good, alice]).name) == "alice:a1"


def test_chain_leaf_missing_digital_signature_usage() -> None:
    _, (_, alice) = _chain()
    usage = x509.KeyUsage(False, False, True, False, False, False, False, False, False)
    command = x509.UnrecognizedExtension(ALBATROSS_OID, encode_extension(UnikernelInfo()))
    bad = _custom_leaf(alice, key_of("p256"), [(command, False), (usage, True)])
    with pytest.raises(Refusal, match="keyUsage lacks digitalSignature"):
        authorize([bad, alice])


def test_chain_leaf_with_server_purpose_only() -> None:
    _, (_, alice) = _chain()
    command = x509.UnrecognizedExtension(ALBATROSS_OID, encode_extension(UnikernelInfo()))
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    bad = _custom_leaf(alice, key_of("p256"), [(command, False), (eku, True)])
    with pytest.raises(Refusal, match="extendedKeyUsage lacks clientAuth"):
        authorize([bad, alice])


def test_chain_leaf_signed_by_a_leaf_is_refused() -> None:
    root, (good, alice) = _chain()
    below = leaf(good, key_of("p384"), key_of("ed25519").public_key(), "x", UnikernelInfo(), NOW)
    with pytest.raises(crypto.X509StoreContextError):
        verify([below, good, alice], [root], NOW)


def test_policy_add_leaf_is_not_a_ca() -> None:
    # A leaf carrying `policy add` (what a remote add-policy makes) cannot sign further.
    root, root_key = ca_of("root")
    fake = leaf(root, root_key, key_of("p256").public_key(), "x", PolicyAdd(ALICE), NOW)
    below = leaf(fake, key_of("p256"), key_of("ed25519").public_key(), "y", UnikernelInfo(), NOW)
    with pytest.raises(crypto.X509StoreContextError):
        verify([below, fake], [root], NOW)
