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

from ca.profiles import PrivateKey, generate_key, key_matches, leaf
from client.errors import ChainFailure, CliFailed
from core.certs import policy_of
from core.errors import AlbatrossError
from core.pemfiles import load_certificates, load_key
from core.wire import Command, PolicyAdd, UnikernelCreate

__all__ = [
    "CaMaterial",
    "LeafChain",
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


def make_leaf(
    ca: CaMaterial, command: Command, cn: str, key_type: str, now: dt.datetime
) -> LeafChain:
    """Check and sign the leaf; errors carry ``couldn't generate certificate chain``."""
    try:
        if not key_matches(ca.key, ca.cert.public_key()):
            raise CliFailed("Public key of certificate doesn't match private key")
        precheck(command, ca.cert)
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
