"""``alba ca crl-leaf``: a delegate hands its own CRL to the endpoint in a request leaf."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from ca import profiles
from ca.cli import ca_group
from ca.revoke import revoke, write_crl
from core.authorize import authorize
from core.wire import Name, Policy, PolicyInfo, UnikernelInfo
from tlsendpoint.security.rules.revocation import RevocationRefusal, submitted_crl
from tlsendpoint.security.state.crldir import CrlStore

NOW = dt.datetime.now(dt.UTC)
POLICY = Policy(2, frozenset({0}), 64, None, frozenset({"service"}))


def _write(directory: Path, name: str, cert: x509.Certificate, key: profiles.PrivateKey) -> None:
    (directory / f"{name}.pem").write_bytes(cert.public_bytes(Encoding.PEM))
    (directory / f"{name}.key").write_bytes(
        key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )


@dataclass
class Pki:
    root: x509.Certificate
    root_key: profiles.PrivateKey
    alice: x509.Certificate
    bob: x509.Certificate
    bob_key: profiles.PrivateKey
    dir: Path  # alice's files


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    root_key = profiles.generate_key()
    root = profiles.root_ca(root_key, "ca", NOW)
    alice_key = profiles.generate_key()
    alice = profiles.intermediate(root, root_key, alice_key.public_key(), "alice", POLICY, NOW)
    bob_key = profiles.generate_key()
    small = Policy(1, frozenset({0}), 32, None, frozenset({"service"}))
    bob = profiles.intermediate(alice, alice_key, bob_key.public_key(), "bob", small, NOW)
    alice_dir = tmp_path / "alice"
    alice_dir.mkdir()
    _write(alice_dir, "alice", alice, alice_key)
    return Pki(root, root_key, alice, bob, bob_key, alice_dir)


def test_alice_hands_in_her_crl_and_the_endpoint_takes_it(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice_dir, bob = pki.dir, pki.bob
    # alice revokes bob and makes her CRL with the toolkit...
    revoke(alice_dir, [bob.serial_number], NOW)
    write_crl(alice_dir / "alice.pem", alice_dir / "alice.key", alice_dir / "alice.crl", NOW)
    monkeypatch.chdir(alice_dir)
    result = CliRunner().invoke(
        ca_group, ["crl-leaf", "alice.crl", "--cacert", "alice.pem", "--cakey", "alice.key"]
    )
    assert result.exit_code == 0, result.output
    assert (
        result.stdout == "wrote crl-leaf.pem and crl-leaf.key; run them with `alba certificate`\n"
    )
    assert (alice_dir / "crl-leaf.key").stat().st_mode & 0o777 == 0o600
    chain = x509.load_pem_x509_certificates((alice_dir / "crl-leaf.pem").read_bytes())
    assert [c.subject.rfc4514_string() for c in chain] == ["CN=.", "CN=alice"]

    # ...which is an ordinary read-only request for the endpoint, carrying the CRL:
    request = authorize(chain)
    assert (request.name, request.command) == (Name(("alice",)), PolicyInfo())
    der = submitted_crl(chain[0])
    crl = x509.load_pem_x509_crl((alice_dir / "alice.crl").read_bytes())
    assert der == crl.public_bytes(Encoding.DER)

    # The endpoint's CRL store accepts it (alice signed it) and then refuses bob.
    crl_dir = tmp_path / "crls"
    crl_dir.mkdir()
    store = CrlStore(crl_dir, pki.root)
    leaf_key = profiles.generate_key()
    bob_leaf = profiles.leaf(bob, pki.bob_key, leaf_key.public_key(), ".", UnikernelInfo(), NOW)
    store.check([bob_leaf, bob, pki.alice])  # not revoked yet
    assert der is not None
    store.accept_submitted(chain, der)
    store.reload()
    with pytest.raises(RevocationRefusal, match=r"CN=bob .* was revoked"):
        store.check([bob_leaf, bob, pki.alice])


def test_only_your_own_crl_can_be_handed_in(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    alice_dir = pki.dir
    _write(alice_dir, "root", pki.root, pki.root_key)
    write_crl(alice_dir / "root.pem", alice_dir / "root.key", alice_dir / "root.crl", NOW)
    monkeypatch.chdir(alice_dir)
    result = CliRunner().invoke(
        ca_group, ["crl-leaf", "root.crl", "--cacert", "alice.pem", "--cakey", "alice.key"]
    )
    assert result.exit_code == 124
    assert "the CRL was issued by CN=ca, not by this CA (CN=alice): hand in your own CRL" in (
        result.stderr
    )
    assert not (alice_dir / "crl-leaf.pem").exists()
