"""ca.store, ca.pem and ca.bundle: modes, refusals, key/cert matching, formats."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from ca import store
from ca.bundle import Bundle, encode_bundle, parse_bundle
from ca.errors import StoreError
from ca.profiles import generate_key, intermediate, root_ca
from core import pemfiles
from core.errors import AlbatrossError, FileError, ParseError
from core.pem import certificates_from, encode_private_key, objects_from, private_key_from
from core.wire import Policy
from tests.ca.helpers import CERTS, NOW, ca_of, load_cert

ALICE = Policy(2, frozenset({0}), 64, 100, frozenset({"service"}))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_new_sets_exact_mode_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    store.write_new(path, b"secret", 0o600)
    assert mode(path) == 0o600
    with pytest.raises(StoreError) as caught:
        store.write_new(path, b"other", 0o600)
    assert (
        caught.value.message == f"refusing to overwrite {path}: move it away or choose another name"
    )
    assert path.read_bytes() == b"secret"


def test_ensure_key_creates_0400_then_reuses(tmp_path: Path) -> None:
    path = tmp_path / "ca.key"
    key, created = store.ensure_key(path, "p256")
    assert created and mode(path) == 0o400
    again, created_again = store.ensure_key(path, "ed25519")  # the type of the existing key wins
    assert not created_again
    assert encode_private_key(again) == encode_private_key(key)


def test_load_signer_checks_key_matches(tmp_path: Path) -> None:
    signer = store.load_signer(CERTS / "ca/alice.pem", CERTS / "ca/alice.key")
    assert signer.chain == ()
    with pytest.raises(StoreError) as caught:
        store.load_signer(CERTS / "ca/alice.pem", CERTS / "ca/bob.key")
    assert caught.value.message == "Public key of certificate doesn't match private key"


def test_load_signer_with_chain_file(tmp_path: Path) -> None:
    bob, alice = load_cert(CERTS / "ca/bob.pem"), load_cert(CERTS / "ca/alice.pem")
    chain = tmp_path / "bob-chain.pem"
    store.write_certificates(chain, [bob, alice])
    signer = store.load_signer(chain, CERTS / "ca/bob.key")
    assert (signer.cert, signer.chain) == (bob, (alice,))


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (None, FileError, "does not exist"),
        (b"", ParseError, "not a valid X.509 certificate"),
        (
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            ParseError,
            "no CERTIFICATE block",
        ),
        (
            b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            ParseError,
            "bad base64",
        ),
    ],
)
def test_certificate_file_errors(
    tmp_path: Path, content: bytes | None, error: type[AlbatrossError], message: str
) -> None:
    path = tmp_path / "c.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error, match=message):
        pemfiles.load_certificates(path)


def test_key_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    path.write_bytes(CERTS.joinpath("ca/alice.pem").read_bytes())
    with pytest.raises(ParseError, match="no PRIVATE KEY block found"):
        pemfiles.load_key(path)
    path.write_bytes(b"garbage")
    with pytest.raises(ParseError, match="not a valid private key"):
        pemfiles.load_key(path)


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(b"x" * 11)
    assert pemfiles.read_file(path, "input", limit=11) == b"x" * 11
    with pytest.raises(FileError, match=r"^input .*big is larger than 10 bytes$"):
        pemfiles.read_file(path, "input", limit=10)


def test_the_one_bound_fits_the_largest_chain() -> None:
    # a 2^24-octet leaf plus intermediates (17 MiB of DER) as PEM: base64, a newline per 64
    pem_of_largest_chain = 17 * 1024 * 1024 * 4 // 3 * 65 // 64
    assert pem_of_largest_chain < pemfiles.MAX_PEM_FILE < 2 * pem_of_largest_chain


def test_der_and_pem_are_both_read() -> None:
    cert = load_cert(CERTS / "ca/alice.pem")
    assert certificates_from(cert.public_bytes(Encoding.DER)) == [cert]
    key = private_key_from(CERTS.joinpath("ca/alice.key").read_bytes())
    assert len(objects_from(CERTS.joinpath("ca/alice.req").read_bytes())) == 1
    assert objects_from(encode_private_key(key))[0].public_key() == key.public_key()


def test_db_line_uses_integer_content_octets() -> None:
    server = load_cert(CERTS / "ca/root-server.pem")
    alice = load_cert(CERTS / "ca/alice.pem")
    captured = CERTS.joinpath("ca/root-db").read_text().splitlines()
    assert store.db_line(server, "server") == captured[0] + "\n"  # leading 00: top bit set
    assert store.db_line(alice, "alice") == captured[1] + "\n"


def test_append_db_appends(tmp_path: Path) -> None:
    db = tmp_path / "db"
    db.write_text("x y\n")
    store.append_db(db, load_cert(CERTS / "ca/alice.pem"), "alice")
    assert db.read_text() == "x y\n31146c0f3ef971112a0c alice\n"


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../evil"])
def test_file_names_from_common_names_stay_in_the_directory(tmp_path: Path, name: str) -> None:
    with pytest.raises(StoreError, match="cannot use"):
        store.file_name_for(tmp_path, name, ".pem")
    assert store.file_name_for(tmp_path, "Dave", ".pem") == tmp_path / "Dave.pem"


def test_write_certificates_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "x.pem"
    path.write_text("old")
    cert = load_cert(CERTS / "ca/alice.pem")
    store.write_certificates(path, [cert, cert])
    assert certificates_from(path.read_bytes()) == [cert, cert]
    assert mode(path) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["x.pem"]


# -- bundles ------------------------------------------------------------------


def _bundle() -> Bundle:
    root, root_key = ca_of("root")
    key = generate_key()
    cert = intermediate(root, root_key, key.public_key(), "friend", ALICE, NOW)
    return Bundle("friend", (cert,), key, (root,), "192.0.2.1:1025", "albatross.example")


def test_bundle_round_trip_and_file_mode(tmp_path: Path) -> None:
    bundle = _bundle()
    path = tmp_path / "friend.bundle"
    store.write_bundle(path, bundle)
    assert mode(path) == 0o600
    loaded = store.load_bundle(path)
    assert loaded.chain == bundle.chain and loaded.server_ca == bundle.server_ca
    assert (loaded.name, loaded.endpoint, loaded.server_name) == (
        "friend",
        "192.0.2.1:1025",
        "albatross.example",
    )
    assert encode_private_key(loaded.key) == encode_private_key(bundle.key)
    assert path.read_text().startswith(
        "Albatross-Bundle: 1\nName: friend\nEndpoint: 192.0.2.1:1025\n"
        "Server-Name: albatross.example\n\n-----BEGIN CERTIFICATE-----\n"
    )
    with pytest.raises(StoreError, match="refusing to overwrite"):
        store.write_bundle(path, bundle)


def test_bundle_without_server_name() -> None:
    bundle = dataclasses.replace(_bundle(), server_name=None)
    assert parse_bundle(encode_bundle(bundle)).server_name is None


def test_bundle_refuses_a_key_of_another_certificate() -> None:
    with pytest.raises(StoreError, match="key does not match"):
        dataclasses.replace(_bundle(), key=generate_key())


def test_bundle_refuses_a_non_delegation_certificate() -> None:
    root, root_key = ca_of("root")
    with pytest.raises(StoreError, match="not a delegated CA"):
        Bundle("ca", (root,), root_key, (root,), "h:1")


def test_bundle_refuses_a_broken_chain() -> None:
    bundle = _bundle()
    stranger = root_ca(generate_key(), "ca", NOW)
    with pytest.raises(StoreError, match="chain is broken"):
        dataclasses.replace(bundle, chain=(bundle.chain[0], stranger))


def test_bundle_refuses_a_leaf_as_server_ca() -> None:
    with pytest.raises(StoreError, match="server CA is not a CA"):
        dataclasses.replace(_bundle(), server_ca=(load_cert(CERTS / "ca/root-server.pem"),))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("Albatross-Bundle: 1", "Albatross-Bundle: 2"), "version 1"),
        (lambda t: t.replace("Endpoint: 192.0.2.1:1025\n", ""), "no Endpoint"),
        (lambda t: t.replace("Endpoint: 192.0.2.1:1025", "Endpoint: a b"), "endpoint 'a b'"),
        (lambda t: t.replace("Name: friend", "Name: other"), "differs from its certificate's CN"),
        (lambda t: t.replace("Name: friend", "Name friend"), "is not 'Field: value'"),
        (lambda t: t.split("-----BEGIN ALBATROSS SERVER CA-----")[0], "no server CA"),
    ],
)
def test_bundle_parse_errors(edit: object, message: str) -> None:
    text = encode_bundle(_bundle()).decode()
    assert callable(edit)
    with pytest.raises(StoreError, match=message):
        parse_bundle(edit(text).encode())
