"""The private and public key types albatross certificates use, and key matching (pure).

albatross signs with Ed25519, ECDSA (P-256/384/521) or RSA keys (``--key-type``);
every reader of a key file and every signer shares these types.  Making keys
belongs to the CA toolkit (:mod:`ca.keys`); knowing what a key is belongs here,
so that the core's PEM reader (:mod:`core.pem`) can check it.
"""

from __future__ import annotations

from typing import TypeAlias

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["PRIVATE_KEY_TYPES", "PUBLIC_KEY_TYPES", "PrivateKey", "PublicKey", "key_matches"]

PrivateKey: TypeAlias = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey: TypeAlias = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey

#: For ``isinstance``: the key classes of :data:`PrivateKey` and :data:`PublicKey`.
PRIVATE_KEY_TYPES = (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)
PUBLIC_KEY_TYPES = (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey, rsa.RSAPublicKey)


def key_matches(key: PrivateKey, public_key: object) -> bool:
    """Whether *key* is the private half of *public_key* (compared by SPKI DER)."""
    if not isinstance(public_key, PUBLIC_KEY_TYPES):
        return False
    spki = Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(*spki) == public_key.public_bytes(*spki)
