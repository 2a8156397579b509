"""The one certificate inspector: certificates, CSRs, chains, keys and bundles, pure.

``alba ca inspect``, ``albatross-inspect`` (for X.509 input) and anything else
that shows a certificate call :func:`describe_input` / :func:`describe_object`
and print :func:`to_text` or :func:`json_records`, so a certificate reads the
same everywhere: subjects as ocaml-x509 prints them (``/CN=server``), the serial
as albatross's database writes it (:func:`core.jsonout.serial_text`), values in
the JSON model of :mod:`core.jsonout`.  The albatross extension is decoded with
the protocol core: a delegated CA shows its policy, a leaf or CSR its command in
albatross's words and as structured data.  Secret key material is never shown,
only the key type.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from ca.bundle import Bundle, parse_bundle
from ca.describe import command_text
from ca.provision import subject_text
from core.authorize import authorize
from core.certs import ALBATROSS_OID, PIN_EXTENSION_OID, albatross_command, common_name, pins_of
from core.errors import AlbatrossError, ParseError
from core.jsonout import json_line, record, serial_text, to_json
from core.pem import PemObject, objects_from
from core.wire import Command, PolicyAdd

__all__ = [
    "Json",
    "describe_input",
    "describe_object",
    "json_records",
    "object_lines",
    "report",
    "to_text",
]

Json: TypeAlias = dict[str, object]

_CURVES = {"secp256r1": "p256", "secp384r1": "p384", "secp521r1": "p521"}


def key_type(key: object) -> str:
    """Our name of a key type (the ``--key-type`` spelling where there is one)."""
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, ed448.Ed448PublicKey | ed448.Ed448PrivateKey):
        return "ed448"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return _CURVES.get(key.curve.name, key.curve.name)
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return f"rsa{key.key_size}"
    return type(key).__name__


def _albatross(obj: x509.Certificate | x509.CertificateSigningRequest) -> Json | None:
    """The albatross extension: criticality, value octets, and what it asks for."""
    try:
        ext = obj.extensions.get_extension_for_oid(ALBATROSS_OID)
    except (x509.ExtensionNotFound, ValueError):
        ext = None
    raw = getattr(ext.value, "value", b"") if ext is not None else b""
    found: Json = {"critical": ext.critical, "hex": raw.hex()} if ext is not None else {}
    try:
        command: Command | None = albatross_command(obj)
    except ParseError as exc:
        return {**found, "error": f"albatross extension does not decode: {exc.message}"}
    if command is None:
        return None
    if isinstance(command, PolicyAdd):
        return {
            **found,
            "version": 5,
            "kind": "policy",
            "policy": to_json(command.policy),
            "text": command.policy.describe(),
        }
    return {
        **found,
        "version": 5,
        "kind": "command",
        "command": to_json(command),
        "text": command_text(command),
    }


def _pins(cert: x509.Certificate) -> Json | None:
    """Our reproducible-build pins (core.pins), if the certificate carries them."""
    try:
        pins = pins_of(cert)
    except ParseError as exc:
        return {"error": exc.message}
    return None if pins is None else {**pins.describe(), "text": pins.text()}


def _extension_value(ext: x509.Extension[x509.ExtensionType]) -> str:
    value = ext.value
    if isinstance(value, x509.BasicConstraints):
        return f"CA:{str(value.ca).upper()}" + (
            "" if value.path_length is None else f", pathlen {value.path_length}"
        )
    if isinstance(value, x509.KeyUsage):
        names = [
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
        ]
        return ", ".join(n for n in names if getattr(value, n))
    if isinstance(value, x509.ExtendedKeyUsage):
        return ", ".join(getattr(u, "_name", u.dotted_string) for u in value)
    if isinstance(value, x509.SubjectKeyIdentifier):
        return value.digest.hex()
    if isinstance(value, x509.AuthorityKeyIdentifier):
        return (value.key_identifier or b"").hex()
    if isinstance(value, x509.SubjectAlternativeName):
        return ", ".join(str(n.value) for n in value)
    if ext.oid == ALBATROSS_OID:
        return "albatross extension"
    if ext.oid.dotted_string == PIN_EXTENSION_OID:
        return "reproducible-build pins (albatross-gateway)"
    return type(value).__name__


def _extensions(obj: x509.Certificate | x509.CertificateSigningRequest) -> list[Json]:
    try:
        extensions = list(obj.extensions)
    except ValueError as exc:
        return [{"error": f"extensions do not parse: {exc}"}]
    return [
        {
            "oid": ext.oid.dotted_string,
            "name": "albatross" if ext.oid == ALBATROSS_OID else getattr(ext.oid, "_name", "?"),
            "critical": ext.critical,
            "value": _extension_value(ext),
        }
        for ext in extensions
    ]


def _role(cert: x509.Certificate, albatross: Json | None) -> str:
    try:
        ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (x509.ExtensionNotFound, ValueError):
        ca = False
    try:
        eku = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except (x509.ExtensionNotFound, ValueError):
        eku = []
    if ca:
        if albatross is not None and albatross.get("kind") == "policy":
            return "delegated CA"
        return "root CA" if cert.subject == cert.issuer else "CA"
    if albatross is not None and albatross.get("kind") == "command":
        return "request leaf"
    if ExtendedKeyUsageOID.SERVER_AUTH in eku:
        return "server"
    return "end entity"


def describe_object(obj: PemObject) -> Json:
    """One certificate, CSR or private key as a JSON-able dict."""
    if isinstance(obj, x509.Certificate):
        albatross = _albatross(obj)
        serial = obj.serial_number
        start, end = obj.not_valid_before_utc, obj.not_valid_after_utc
        return {
            "type": "certificate",
            "role": _role(obj, albatross),
            "subject": subject_text(obj.subject),
            "common_name": common_name(obj.subject),
            "issuer": subject_text(obj.issuer),
            "serial": serial_text(serial),
            "not_before": start.isoformat(),
            "not_after": end.isoformat(),
            "validity_seconds": int((end - start).total_seconds()),
            "key_type": key_type(obj.public_key()),
            "signature_algorithm": getattr(obj.signature_algorithm_oid, "_name", "?"),
            "sha256": hashlib.sha256(obj.public_bytes(Encoding.DER)).hexdigest(),
            "extensions": _extensions(obj),
            "albatross": albatross,
            "pins": _pins(obj),
        }
    if isinstance(obj, x509.CertificateSigningRequest):
        return {
            "type": "certificate request",
            "subject": subject_text(obj.subject),
            "common_name": common_name(obj.subject),
            "key_type": key_type(obj.public_key()),
            "signature_valid": obj.is_signature_valid,
            "sha256": hashlib.sha256(obj.public_bytes(Encoding.DER)).hexdigest(),
            "extensions": _extensions(obj),
            "albatross": _albatross(obj),
        }
    return {"type": "private key", "key_type": key_type(obj)}


def _status(cert: x509.Certificate, now: dt.datetime) -> str:
    if now < cert.not_valid_before_utc:
        return "not yet valid"
    if now > cert.not_valid_after_utc:
        return "expired"
    return "valid"


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _describe_certs(certs: list[PemObject], now: dt.datetime | None) -> list[Json]:
    """Describe *certs*: their status at *now* and whether the next one signed them."""
    items = [describe_object(c) for c in certs]
    for position, (obj, item) in enumerate(zip(certs, items, strict=True)):
        if not isinstance(obj, x509.Certificate):
            continue
        if now is not None:
            item["status"] = _status(obj, now)
        following = certs[position + 1] if position + 1 < len(certs) else None
        if isinstance(following, x509.Certificate):
            item["signed_by_next"] = _signed_by(obj, following)
    return items


def _describe_bundle(bundle: Bundle, now: dt.datetime | None) -> Json:
    chain = _describe_certs([*bundle.chain, *bundle.server_ca[:1]], now)[: len(bundle.chain)]
    return {
        "type": "bundle",
        "name": bundle.name,
        "endpoint": bundle.endpoint,
        "server_name": bundle.server_name,
        "chain": chain,
        "key": describe_object(bundle.key),
        "server_ca": _describe_certs(list(bundle.server_ca), now),
    }


def _request(certs: list[PemObject]) -> Json | None:
    """What our endpoint would make of a chain that starts with a request leaf."""
    chain = [c for c in certs if isinstance(c, x509.Certificate)]
    if not chain or len(chain) != len(certs):
        return None
    first = _albatross(chain[0])
    if first is None or first.get("kind") != "command":
        return None
    try:
        request = authorize(chain)
    except AlbatrossError as exc:  # Refusal, or a parse error deeper in the chain
        return {"refused": exc.message}
    return {
        "name": str(request.name),
        "command": command_text(request.command),
        "text": f"{request.name.pretty()}: {command_text(request.command)}",
        "policies": [
            {
                "path": str(path),
                "policy": to_json(policy),
                "text": f"{path.pretty()}: policy add {policy}",
            }
            for path, policy in request.policies
        ],
    }


def describe_input(data: bytes, now: dt.datetime | None = None) -> Json:
    """Everything in one input file: a bundle, or a list of objects.

    With *now*, each certificate also gets its ``status`` at that time; each
    certificate followed by another gets ``signed_by_next``.
    """
    if data.lstrip().startswith(b"Albatross-Bundle:"):
        return _describe_bundle(parse_bundle(data), now)
    objects = objects_from(data)
    described: Json = {"type": "objects", "objects": _describe_certs(objects, now)}
    request = _request(objects)
    if request is not None:
        described["request"] = request
    return described


def object_lines(item: Json, indent: str) -> list[str]:
    kind = item["type"]
    if kind == "private key":
        return [f"{indent}private key: {item['key_type']} (not shown)"]
    lines = []
    if kind == "certificate":
        lines.append(
            f"{indent}certificate: {item['role']} {item['subject']}, issued by {item['issuer']}"
        )
        lines.append(
            f"{indent}  serial {item['serial']}, {item['key_type']} key, signed with "
            f"{item['signature_algorithm']}"
        )
        status = f", {item['status']} now" if "status" in item else ""
        lines.append(
            f"{indent}  valid from {item['not_before']} until {item['not_after']} "
            f"({item['validity_seconds']} s){status}"
        )
        if "signed_by_next" in item:
            verdict = "yes" if item["signed_by_next"] else "NO"
            lines.append(f"{indent}  signed by the next certificate: {verdict}")
    else:
        valid = "valid" if item["signature_valid"] else "INVALID"
        lines.append(
            f"{indent}certificate request: {item['subject']}, {item['key_type']} key, "
            f"self-signature {valid}"
        )
    extensions = item["extensions"]
    assert isinstance(extensions, list)
    for ext in extensions:
        critical = " (critical)" if ext.get("critical") else ""
        lines.append(
            f"{indent}  extension {ext.get('name')}{critical}: {ext.get('value', ext.get('error'))}"
        )
    albatross = item["albatross"]
    if isinstance(albatross, dict):
        if "error" in albatross:
            lines.append(f"{indent}  {albatross['error']}")
        elif albatross["kind"] == "policy":
            lines.append(f"{indent}  albatross policy: {albatross['text']}")
        else:
            lines.append(f"{indent}  albatross command: {albatross['text']}")
    else:
        lines.append(f"{indent}  albatross extension: none")
    pins = item.get("pins")
    if isinstance(pins, dict):
        lines.append(f"{indent}  pins: {pins.get('text', pins.get('error'))}")
    return lines


def to_text(described: Json) -> list[str]:
    """Plain-words lines for the result of :func:`describe_input`."""
    if described["type"] == "bundle":
        lines = [
            f"delegation bundle for {described['name']}: endpoint {described['endpoint']}"
            + (f", server name {described['server_name']}" if described["server_name"] else "")
        ]
        for section in ("chain", "server_ca"):
            items = described[section]
            assert isinstance(items, list)
            lines.append("chain:" if section == "chain" else "server CA:")
            for item in items:
                lines.extend(object_lines(item, "  "))
        key = described["key"]
        assert isinstance(key, dict)
        lines.extend(object_lines(key, ""))
        return lines
    objects = described["objects"]
    assert isinstance(objects, list)
    lines = [line for item in objects for line in object_lines(item, "")]
    request = described.get("request")
    if isinstance(request, dict):
        if "refused" in request:
            lines.append(f"the endpoint would refuse this chain: {request['refused']}")
        else:
            lines.append("the endpoint would send to the daemon:")
            lines.extend(f"  {entry['text']}" for entry in request["policies"])
            lines.append(f"  {request['text']}")
    return lines


def json_records(described: list[tuple[str, Json]]) -> str:
    """JSON Lines, one ``inspect`` record per input.

    ``{"schema": 1, "record": "inspect", "file": ..., "type": "objects"|"bundle", ...}``.
    """
    return "".join(
        json_line(record("inspect", file=name, **content)) for name, content in described
    )


def report(described: list[tuple[str, Json]], as_json: bool) -> str:
    """What an inspect command prints for its inputs (file name, description).

    JSON Lines, or plain words with a ``==> file <==`` line before each input when
    there are several.
    """
    if as_json:
        return json_records(described)
    lines: list[str] = []
    for name, content in described:
        if len(described) > 1:
            lines.append(f"==> {name} <==")
        lines.extend(to_text(content))
    return "".join(line + "\n" for line in lines)
