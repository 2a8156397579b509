# Building and pre-checking the per-command leaf certificate (remote mode).
#
# Security reasoning.  The command travels inside a leaf we sign with the user's
# CA key, so everything the endpoint will enforce we check here first, with
# albatross-client's texts (client/albatross_client.ml gen_cert, connect_remote):
# the CA key must match the CA certificate, a create must fit the CA's own
# policy and a policy add must lie within it, and the whole chain
# [leaf, CA, ...] must validate against --server-ca before we connect (exit
# 116), so a misconfigured chain never leaks a signed command to a server.  The
# leaf itself is ca.profiles.leaf: a fresh key, 5-minute validity, the same
# extensions as albatross.
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import crypto

from ca import profiles
from ca.profiles import PrivateKey, generate_key, key_matches, leaf
from client.errors import ChainFailure, CliFailed
from core.certs import policy_of
from core.errors import AlbatrossError
from core.pemfiles import load_certificates, load_key
from core.wire import Command, PolicyAdd, UnikernelCreate
from core.wire.grammar import encode_extension

__all__ = [
    "CaMaterial",
    "LeafChain",
    "check_room",
    "load_ca",
    "make_leaf",
    "precheck",
    "validate_chain",
]


@dataclass(frozen=True)
class CaMaterial:
    """The signing CA (first certificate of ``--ca``), its chain and its key."""

    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    key: PrivateKey


@dataclass(frozen=True)
class LeafChain:
    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # sent after the leaf
    key: PrivateKey


def load_ca(ca: Path, ca_key: Path) -> CaMaterial:
    """The ``--ca`` chain and ``--ca-key`` (read by :mod:`core.pemfiles`, the one reader)."""
    key = load_key(ca_key, "CA key")
    certs = load_certificates(ca, "CA certificate")
    return CaMaterial(certs[0], tuple(certs[1:]), key)


def precheck(command: Command, ca_cert: x509.Certificate) -> None:
    """The local policy checks of ``gen_cert`` (PolicyError/UsageError with albatross texts)."""
    policy = policy_of(ca_cert)
    if policy is None:
        return
    if isinstance(command, UnikernelCreate):
        config = command.config
        policy.check_fits(config.cpuids, config.memory, config.effective_bridges())
    elif isinstance(command, PolicyAdd):
        command.policy.check_within(policy)


#: Room a leaf needs beside its albatross extension: names, key, signature, other
#: extensions (~600 octets with Ed25519; an RSA-4096 key and signature take ~1100).
LEAF_OVERHEAD = 2048


def check_room(command: Command, ca_chain: tuple[x509.Certificate, ...]) -> None:
    """Refuse, saying what works, a create whose image cannot travel in a certificate.

    TLS carries the client's chain in one handshake message, a 24-bit length: nothing
    streams it, so the only ways out are a smaller (or compressed) image or the local
    socket on the host, where no certificate is involved.
    """
    if not isinstance(command, UnikernelCreate):
        return
    limit = profiles.MAX_CERT_SIZE
    chain = sum(len(c.public_bytes(Encoding.DER)) for c in ca_chain)
    needed = len(encode_extension(command)) + LEAF_OVERHEAD + chain
    if needed <= limit:
        return
    image = len(command.config.image)
    compressed = " compressed" if command.config.compressed else ""
    compress = "" if command.config.compressed else "compress it (--compression-level 9), "
    smaller = "that compresses to less than" if command.config.compressed else "of less than"
    raise CliFailed(
        f"the{compressed} image of {image} octets does not fit in a certificate: TLS carries "
        f"the whole chain (here about {needed} octets) in one message of at most {limit} "
        f"octets ({limit / 1048576:g} MiB); {compress}use an image {smaller} about "
        f"{limit - (needed - image)} octets, or create it on the host through the local "
        "socket (alba create --socket ...), which needs no certificate"
    )


def make_leaf(
    ca: CaMaterial, command: Command, cn: str, key_type: str, now: dt.datetime
) -> LeafChain:
    """Check and sign the leaf; errors carry ``couldn't generate certificate chain``."""
    try:
        if not key_matches(ca.key, ca.cert.public_key()):
            raise CliFailed("Public key of certificate doesn't match private key")
        precheck(command, ca.cert)
        check_room(command, (ca.cert, *ca.chain))
        key = generate_key(key_type)
        cert = leaf(ca.cert, ca.key, key.public_key(), cn, command, now)
    except AlbatrossError as exc:
        raise CliFailed(f"couldn't generate certificate chain: {exc.message}") from None
    return LeafChain(cert, (ca.cert, *ca.chain), key)


def validate_chain(
    chain: LeafChain, anchors: list[x509.Certificate], now: dt.datetime | None = None
) -> None:
    """Validate [leaf, CA, ...] against the *anchors* (``--server-ca``), as ocaml-x509 would."""
    store = crypto.X509Store()
    for anchor in anchors:
        store.add_cert(crypto.X509.from_cryptography(anchor))
    if now is not None:
        store.set_time(now.astimezone(dt.UTC).replace(tzinfo=None))
    context = crypto.X509StoreContext(
        store,
        crypto.X509.from_cryptography(chain.leaf),
        [crypto.X509.from_cryptography(c) for c in chain.chain],
    )
    try:
        context.verify_certificate()
    except crypto.X509StoreContextError as exc:
        raise ChainFailure(f"TLS validation error of provided certificate chain: {exc}") from None


def pem_chain(chain: LeafChain) -> tuple[list[str], str]:
    """PEM texts of the CA chain and of the leaf (for ``--destination -``)."""
    cas = [c.public_bytes(Encoding.PEM).decode() for c in chain.chain]
    return cas, chain.leaf.public_bytes(Encoding.PEM).decode()
