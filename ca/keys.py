"""Key generation and signature hashes, as albatross-client does them (pure).

``--key-type`` names (ed25519 is the default); the signature hash follows the
signing key as in ocaml-x509: none for Ed25519, SHA-256 for RSA and P-256,
SHA-384 for P-384, SHA-512 for P-521.  The key types themselves and
:func:`key_matches` belong to the protocol core (:mod:`core.keys`); they are
re-exported here for the toolkit's callers.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from core.errors import UsageError
from core.keys import PrivateKey, PublicKey, key_matches

__all__ = ["KEY_TYPES", "PrivateKey", "PublicKey", "generate_key", "key_matches"]

#: Key types of albatross-client's ``--key-type`` (the first is the default).
KEY_TYPES = ("ed25519", "p256", "p384", "p521", "rsa2048", "rsa4096")


def generate_key(key_type: str = "ed25519") -> PrivateKey:
    """A fresh private key of one of :data:`KEY_TYPES`."""
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    curves: dict[str, ec.EllipticCurve] = {
        "p256": ec.SECP256R1(),
        "p384": ec.SECP384R1(),
        "p521": ec.SECP521R1(),
    }
    if key_type in curves:
        return ec.generate_private_key(curves[key_type])
    if key_type in ("rsa2048", "rsa4096"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))
    raise UsageError(f"unknown key type {key_type!r}: use one of {', '.join(KEY_TYPES)}")


def _hash_for(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None:
    """Signature hash as ocaml-x509 picks it: none for Ed25519, SHA-2 by curve size."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = key.curve.key_size
        if size > 384:
            return hashes.SHA512()
        if size > 256:
            return hashes.SHA384()
    return hashes.SHA256()
