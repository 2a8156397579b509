"""What a certificate says, read the way albatross (ocaml-x509) reads it.

One owner for the rules the endpoint, the CA toolkit and the client all apply
to a certificate or CSR:

* the common name is the CN of the *last* relative distinguished name that
  has one (ocaml-x509's ``X509.Distinguished_name.common_name``), so a subject
  with two CNs names the request by its second - reading the first would let
  the delegate and the endpoint disagree on the name;
* the albatross command lives in the non-critical extension
  :data:`core.wire.EXTENSION_OID`; present more than once, or not decodable,
  it is a :class:`~core.errors.ParseError`, never a cryptography exception;
* :data:`CRL_EXTENSION_OID` is ours: a delegate hands its own CRL to the
  endpoint inside a leaf (a UUID-based ``2.25`` arc, so no one's arc is used);
* :data:`PIN_EXTENSION_OID` is ours too: a delegation CA's reproducible-build
  pins (:mod:`core.pins`), non-critical so that albatross ignores it.

Pure: certificate objects in, values or ParseError out.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator

from cryptography import x509
from cryptography.x509.oid import NameOID

from core.errors import ParseError
from core.pins import Pins, decode_pins
from core.wire import EXTENSION_OID, Command, Policy, PolicyAdd, decode_extension

__all__ = [
    "ALBATROSS_OID",
    "CRL_EXTENSION_OID",
    "PIN_EXTENSION_OID",
    "BadExtensions",
    "albatross_command",
    "common_name",
    "delegation_hops",
    "pins_of",
    "policy_of",
]

#: The albatross command extension (``1.3.6.1.4.1.49836.42``).
ALBATROSS_OID = x509.ObjectIdentifier(EXTENSION_OID)
#: A delegate's CRL handed to the endpoint in its leaf (ours, not albatross's).
CRL_EXTENSION_OID = "2.25.166282467214839263785720133745207185441"
#: A delegation CA's reproducible-build pins (ours): UUID 3da23b54-7582-4790-94d7-ecf61b9e3036.
PIN_EXTENSION_OID = "2.25.81925263187662021430437548599824756790"
_PIN_OID = x509.ObjectIdentifier(PIN_EXTENSION_OID)

Signed = x509.Certificate | x509.CertificateSigningRequest


class BadExtensions(ParseError):
    """The extension list itself does not parse (malformed, or one extension twice)."""


def common_name(subject: x509.Name | Signed) -> str | None:
    """The CN of the last RDN that has one (ocaml-x509's rule), or None.

    *subject* is a name, or a certificate or CSR whose subject it is.
    """
    found: str | None = None
    try:
        with warnings.catch_warnings():  # cryptography warns about an empty CN; albatross has them
            warnings.simplefilter("ignore", UserWarning)
            name = subject if isinstance(subject, x509.Name) else subject.subject
            rdns = list(name.rdns)
    except ValueError as exc:
        raise ParseError(f"the subject does not parse: {exc}") from exc
    for rdn in rdns:
        for attribute in rdn:
            if attribute.oid == NameOID.COMMON_NAME:
                value = attribute.value
                found = value if isinstance(value, str) else value.decode("utf-8", "replace")
    return found


def _extension_value(obj: Signed, oid: x509.ObjectIdentifier, what: str) -> bytes | None:
    """The raw value of the extension *oid*, None if absent; BadExtensions as below."""
    try:
        ext = obj.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None
    except x509.DuplicateExtension as exc:
        raise BadExtensions(
            f"the extension {exc.oid.dotted_string} appears more than once"
        ) from None
    except ValueError as exc:
        raise BadExtensions(f"bad certificate extensions: {exc}") from None
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise ParseError(f"{what} extension has an unexpected type")
    return value.value


def delegation_hops(
    cas: Iterable[x509.Certificate],
) -> Iterator[tuple[tuple[str, ...], x509.Certificate]]:
    """Each CA of *cas* (top-down) that carries the albatross extension, with its path.

    The path is the lower-cased CNs of that CA and of the extension-carrying CAs above
    it: :func:`core.authorize.authorize`'s rule, for code that reads a chain authorize
    accepted (anti-rollback, pins, metrics) or only shows one (the client's expiry).
    A generator: an unreadable extension or subject raises :class:`ParseError` when it
    is reached, after the hops above it.
    """
    path: tuple[str, ...] = ()
    for cert in cas:
        if _extension_value(cert, ALBATROSS_OID, "albatross") is None:
            continue
        path = (*path, (common_name(cert) or "").lower())
        yield path, cert


def albatross_command(obj: Signed) -> Command | None:
    """The command in the albatross extension, None if there is none.

    Raises :class:`BadExtensions` if the extension list does not parse (cryptography
    refuses it, e.g. an extension present twice) and :class:`ParseError` if the
    albatross extension does not decode.
    """
    value = _extension_value(obj, ALBATROSS_OID, "albatross")
    return None if value is None else decode_extension(value)


def pins_of(obj: Signed) -> Pins | None:
    """The reproducible-build pins of a delegation CA, None without the extension.

    Errors as :func:`albatross_command`; a pin extension that does not decode is a
    :class:`ParseError` (the endpoint refuses the chain: a restriction it cannot read
    must not be dropped).
    """
    value = _extension_value(obj, _PIN_OID, "pin")
    if value is None:
        return None
    try:
        return decode_pins(value)
    except ParseError as exc:
        raise exc.within("pin extension") from None


def policy_of(obj: Signed) -> Policy | None:
    """The policy of a delegation CA, None if it carries no ``policy add``."""
    command = albatross_command(obj)
    return command.policy if isinstance(command, PolicyAdd) else None
