"""Revocation: CRLs by the root or a delegate for its own subtree (issue 6.5)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from ca import profiles
from ca.revoke import make_crl
from core.authorize import authorize
from core.certs import CRL_EXTENSION_OID
from core.wire import EXTENSION_OID, PolicyInfo, encode_extension
from tests.security.pki import NOW, Ca, create, policy, root
from tlsendpoint.security.rules.revocation import RevocationError, RevocationRefusal, submitted_crl
from tlsendpoint.security.state.crldir import CrlStore

DAY = dt.timedelta(days=1)


def crl_of(ca: Ca, *certs: x509.Certificate, now: dt.datetime = NOW, number: int = 1) -> bytes:
    crl = make_crl(ca.cert, ca.key, {c.serial_number: now for c in certs}, now, number)
    return crl.public_bytes(serialization.Encoding.PEM)


def forged_crl(claimed_issuer: Ca, signer: Ca, *certs: x509.Certificate) -> bytes:
    """A CRL naming *claimed_issuer* as issuer but signed with *signer*'s key."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(claimed_issuer.cert.subject)
        .last_update(NOW)
        .next_update(NOW + DAY)
    )
    for cert in certs:
        entry = x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
        builder = builder.add_revoked_certificate(entry.revocation_date(NOW).build())
    crl = builder.sign(signer.key, None)
    return crl.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def tree() -> tuple[Ca, Ca, Ca, Ca]:
    ca = root()
    alice = ca.delegate("alice", policy())
    return ca, alice, alice.delegate("bob", policy()), alice.delegate("carol", policy())


def test_root_revokes_a_delegation_and_its_whole_subtree(
    tmp_path: Path, tree: tuple[Ca, ...]
) -> None:
    ca, alice, bob, _ = tree
    chain = bob.leaf_chain("b1", create())
    authorize(chain)  # albatross has no revocation: accepted
    (tmp_path / "root.crl").write_bytes(crl_of(ca, alice.cert))
    store = CrlStore(tmp_path, ca.cert)
    with pytest.raises(RevocationRefusal) as caught:
        store.check(chain)
    assert caught.value.message == (
        f"intermediate certificate CN=alice (serial {alice.cert.serial_number:x}) was revoked "
        f"on {NOW:%Y-%m-%d %H:%M:%S} UTC by its issuer CN=ca"
    )
    store.check(root().delegate("dave", policy()).leaf_chain("d", create()))  # others unaffected


def test_delegate_revokes_what_it_issued(tmp_path: Path, tree: tuple[Ca, ...]) -> None:
    ca, alice, bob, carol = tree
    leaf_chain = carol.leaf_chain("c1", create(), seconds=86400)
    (tmp_path / "alice.crl").write_bytes(crl_of(alice, bob.cert))
    (tmp_path / "carol.crl").write_bytes(crl_of(carol, leaf_chain[0]))
    store = CrlStore(tmp_path, ca.cert)
    with pytest.raises(
        RevocationRefusal, match=r"intermediate certificate CN=bob .* by its issuer CN=alice"
    ):
        store.check(bob.leaf_chain("b1", create()))
    with pytest.raises(
        RevocationRefusal, match=r"^leaf certificate CN=c1 .* by its issuer CN=carol$"
    ):
        store.check(leaf_chain)
    store.check(carol.leaf_chain("c2", create()))  # a fresh leaf of carol's still works


def test_delegate_cannot_revoke_outside_its_subtree(tmp_path: Path, tree: tuple[Ca, ...]) -> None:
    ca, alice, bob, carol = tree
    # bob claims to be alice and revokes his sibling carol; and revokes alice herself
    (tmp_path / "forged.crl").write_bytes(forged_crl(alice, bob, carol.cert))
    (tmp_path / "up.crl").write_bytes(crl_of(bob, alice.cert))
    store = CrlStore(tmp_path, ca.cert)
    store.check(carol.leaf_chain("c1", create()))
    store.check(alice.leaf_chain("a1", create()))
    with pytest.raises(RevocationRefusal):  # the same CRL signed by alice does count
        (tmp_path / "real.crl").write_bytes(crl_of(alice, carol.cert))
        store.reload()
        store.check(carol.leaf_chain("c1", create()))


def test_same_cn_elsewhere_cannot_revoke(tmp_path: Path) -> None:
    ca = root()
    x_top = ca.delegate("x", policy())
    x_deep = ca.delegate("alice", policy()).delegate("x", policy())  # same DN "CN=x"
    target = x_top.delegate("y", policy())
    (tmp_path / "deep.crl").write_bytes(crl_of(x_deep, target.cert))
    CrlStore(tmp_path, ca.cert).check(target.leaf_chain("t", create()))


def test_reload_on_change_and_damaged_files_keep_the_old_state(
    tmp_path: Path, tree: tuple[Ca, ...]
) -> None:
    ca, alice, bob, _ = tree
    chain = bob.leaf_chain("b1", create())
    store = CrlStore(tmp_path, ca.cert)
    assert not store.changed()
    store.check(chain)
    (tmp_path / "alice.crl").write_bytes(crl_of(alice, bob.cert))
    assert store.changed() and store.maybe_reload()
    assert not store.maybe_reload()
    with pytest.raises(RevocationRefusal):
        store.check(chain)
    (tmp_path / "broken.crl").write_bytes(b"not a crl")
    with pytest.raises(RevocationError, match=r"broken\.crl is not a CRL"):
        store.maybe_reload()
    with pytest.raises(RevocationRefusal):  # a damaged file never un-revokes
        store.check(chain)
    (tmp_path / "broken.crl").unlink()
    (tmp_path / "alice.crl").unlink()
    store.reload()
    store.check(chain)


def test_expired_crl_still_revokes(tmp_path: Path, tree: tuple[Ca, ...]) -> None:
    ca, alice, bob, _ = tree
    (tmp_path / "old.crl").write_bytes(crl_of(alice, bob.cert, now=NOW - 400 * DAY))
    with pytest.raises(RevocationRefusal):  # persisted: a restart reloads it
        CrlStore(tmp_path, ca.cert).check(bob.leaf_chain("b1", create()))


# -- a delegate hands in its CRL over the authenticated channel ---------------------


def crl_leaf(issuer: Ca, crl_der: bytes) -> list[x509.Certificate]:
    """A leaf with a read-only command and the CRL extension, as a client would send it."""
    key = profiles.generate_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ".")]))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(profiles.new_serial())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + DAY)
        .add_extension(
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier(EXTENSION_OID), encode_extension(PolicyInfo())
            ),
            critical=False,
        )
        .add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(CRL_EXTENSION_OID), crl_der),
            critical=False,
        )
        .sign(issuer.key, None)
    )
    return [cert, *issuer.chain]


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_crl(pem).public_bytes(serialization.Encoding.DER)


def test_delegate_submits_its_own_crl(tmp_path: Path, tree: tuple[Ca, ...]) -> None:
    ca, alice, bob, _ = tree
    store = CrlStore(tmp_path, ca.cert)
    chain = crl_leaf(alice, der(crl_of(alice, bob.cert)))
    request = authorize(chain)
    assert request.command == PolicyInfo()
    data = submitted_crl(chain[0])
    assert data is not None and submitted_crl(bob.leaf_chain("b", create())[0]) is None
    written = store.accept_submitted(chain, data)
    assert written.parent == tmp_path and written.name.startswith("submitted-")
    with pytest.raises(RevocationRefusal, match="CN=bob"):
        store.check(bob.leaf_chain("b1", create()))
    with pytest.raises(RevocationRefusal):  # persisted: a restart reloads it
        CrlStore(tmp_path, ca.cert).check(bob.leaf_chain("b1", create()))


def test_submitted_crl_must_come_from_the_submitters_chain(
    tmp_path: Path, tree: tuple[Ca, ...]
) -> None:
    ca, alice, bob, carol = tree
    store = CrlStore(tmp_path, ca.cert)
    forged = der(forged_crl(alice, bob, carol.cert))  # bob pretends to be alice
    with pytest.raises(RevocationRefusal, match="is not signed by a CA of your certificate chain"):
        store.accept_submitted(crl_leaf(bob, forged), forged)
    outsider = der(crl_of(carol, carol.cert))  # carol's own CRL, handed in by bob
    with pytest.raises(RevocationRefusal, match="not signed by a CA of your"):
        store.accept_submitted(crl_leaf(bob, outsider), outsider)
    with pytest.raises(RevocationRefusal, match="is not a CRL"):
        store.accept_submitted(crl_leaf(bob, b"junk"), b"junk")
    assert list(tmp_path.iterdir()) == []
    store.check(carol.leaf_chain("c", create()))


def test_submitted_crl_cannot_be_rolled_back(tmp_path: Path, tree: tuple[Ca, ...]) -> None:
    ca, alice, bob, _ = tree
    store = CrlStore(tmp_path, ca.cert)
    old = der(crl_of(alice, now=NOW - DAY))  # revokes nothing
    new = der(crl_of(alice, bob.cert, now=NOW, number=2))
    store.accept_submitted(crl_leaf(alice, new), new)
    with pytest.raises(RevocationRefusal, match="before the installed one"):
        store.accept_submitted(crl_leaf(alice, old), old)
    with pytest.raises(RevocationRefusal):
        store.check(bob.leaf_chain("b", create()))
