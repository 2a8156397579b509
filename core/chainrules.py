"""albatross's chain rules where they are stricter than OpenSSL's verification.

OpenSSL has already verified the path (signatures, validity, CA flags, path
length, unknown critical extensions, client purpose) when this runs.  ocaml-x509
(behaviour.md §2.3-2.4), which the real endpoint uses, refuses a few chains that
OpenSSL accepts; we refuse them too, so that a chain works with our endpoint
only if it would work with albatross's.  Unlike albatross we say why.

Pure: certificates in, a list of problems out.  ``chain`` is the verified path,
leaf first; the trust anchor is not part of it (OpenSSL checked it as anchor).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import CertificatePoliciesOID, ExtendedKeyUsageOID

__all__ = ["chain_problems", "subject_text"]

_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)
_MIN_RSA_BITS = 1024  # ocaml-tls's minimum


def subject_text(cert: x509.Certificate) -> str:
    try:
        with warnings.catch_warnings():  # an empty CN (albatross-client writes them) warns
            warnings.simplefilter("ignore", UserWarning)
            return cert.subject.rfc4514_string() or "(empty subject)"
    except ValueError:
        return "(unparsable subject)"


def _ext(
    cert: x509.Certificate, cls: type[x509.ExtensionType]
) -> x509.Extension[x509.ExtensionType] | None:
    try:
        return cert.extensions.get_extension_for_class(cls)
    except x509.ExtensionNotFound:
        return None


def _common(cert: x509.Certificate) -> list[str]:
    problems: list[str] = []
    algorithm = cert.signature_hash_algorithm
    if algorithm is not None and not isinstance(algorithm, _HASHES):
        problems.append(f"signed with {algorithm.name.upper()}; only SHA-256/384/512 are accepted")
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < _MIN_RSA_BITS:
        problems.append(f"RSA key of {key.key_size} bits; at least {_MIN_RSA_BITS} are required")
    policies = _ext(cert, x509.CertificatePolicies)
    if policies is not None and policies.critical:
        ids = [p.policy_identifier for p in policies.value]  # type: ignore[attr-defined]
        if CertificatePoliciesOID.ANY_POLICY not in ids:
            problems.append("critical certificatePolicies without anyPolicy")
    return problems


def _leaf(cert: x509.Certificate) -> list[str]:
    problems: list[str] = []
    usage = _ext(cert, x509.KeyUsage)
    if usage is not None and not usage.value.digital_signature:  # type: ignore[attr-defined]
        problems.append("keyUsage lacks digitalSignature")
    eku = _ext(cert, x509.ExtendedKeyUsage)
    if eku is not None:
        usages = list(eku.value)  # type: ignore[call-overload]
        if not {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE} & set(
            usages
        ):
            problems.append("extendedKeyUsage lacks clientAuth")
    basic = _ext(cert, x509.BasicConstraints)
    if basic is not None and basic.value.ca and cert.issuer != cert.subject:  # type: ignore[attr-defined]
        problems.append("a leaf certificate may not be a CA (basicConstraints CA:TRUE)")
    if _ext(cert, x509.NameConstraints) is not None:
        problems.append("a leaf certificate may not carry nameConstraints")
    return problems


def _issuer(cert: x509.Certificate) -> list[str]:
    problems: list[str] = []
    usage = _ext(cert, x509.KeyUsage)
    if usage is None:
        problems.append("a CA certificate needs a keyUsage extension with keyCertSign")
    elif not usage.value.key_cert_sign:  # type: ignore[attr-defined]
        problems.append("keyUsage lacks keyCertSign")
    eku = _ext(cert, x509.ExtendedKeyUsage)
    if eku is not None:
        # ocaml-x509 quirk: a CA's EKU must allow serverAuth (or any), even for client chains.
        usages = set(eku.value)  # type: ignore[call-overload]
        if (
            not {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
            & usages
        ):
            problems.append(
                "a CA's extendedKeyUsage must include serverAuth or anyExtendedKeyUsage"
            )
    return problems


def chain_problems(chain: Sequence[x509.Certificate]) -> list[str]:
    """Every rule the verified *chain* breaks, as "<subject>: <problem>" texts."""
    out: list[str] = []
    for position, cert in enumerate(chain):
        try:
            found = _common(cert) + (_leaf(cert) if position == 0 else _issuer(cert))
        except x509.DuplicateExtension as exc:  # not a ValueError; RFC 5280 §4.2: at most once
            found = [f"the extension {exc.oid.dotted_string} appears more than once"]
        except ValueError as exc:  # a malformed extension cryptography cannot parse
            found = [f"malformed extension: {exc}"]
        out.extend(f"{subject_text(cert)}: {problem}" for problem in found)
    return out
