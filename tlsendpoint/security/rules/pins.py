"""Reproducible-build pins along a chain: may this image run here? (issue 15 point 3)

Every delegation CA of the verified chain may pin image digests (:mod:`core.pins`).
The pins intersect: an image runs only if *every* hop that pins digests lists the
image's SHA-256, so a delegate can narrow its parent's pins but never widen them (it
signs its own child's pins, but the parent's hop stays in the chain).

What is checked, and when (the gate calls these):

* ``create`` (also ``--force``, which is how ``alba update`` replaces a unikernel): the
  digest of the image the request carries - uncompressed first when the request says
  it is compressed, since albatross and builder-web both name an image by the digest
  of its uncompressed bytes; inflation is bounded (:data:`MAX_INFLATED`, 1 GiB) and
  runs on worker threads of its own (two per process, the gate's);
* ``restart``: the image that will run again is the one vmmd already has, so the gate
  asks vmmd for the unikernel's digest and checks that one (a unikernel created before
  its delegation was pinned does not come back under the pin; a bhyve unikernel, whose
  digest field is its VM name, is refused);
* builder-web job pins are not checked here: tying an image to a job needs builder-web
  over the network (see :mod:`core.pins`); ``alba update`` checks them
  (:func:`build_refusal`, given the pins of the client's own CA chain).

A pin extension that does not decode refuses the chain: a restriction the endpoint
cannot read must not silently become no restriction.  Pure: certificates and bytes in,
values or a :class:`PinRefusal` out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from core import certs
from core.chainrules import subject_text
from core.errors import ParseError
from core.pins import Pins, job_refusal
from core.wire import Name, UnikernelConfig
from core.wire.compress import StreamDecompressor
from tlsendpoint.security import SecurityRefusal

__all__ = [
    "MAX_INFLATED",
    "Hop",
    "PinRefusal",
    "build_refusal",
    "ca_pins",
    "chain_pins",
    "check_digest",
    "image_digest",
    "pins_digests",
]


class PinRefusal(SecurityRefusal):
    """The image is not one every pinning delegation allows."""


@dataclass(frozen=True, slots=True)
class Hop:
    """A pinning CA of the chain: its delegation path (CN path) and its pins."""

    path: str
    pins: Pins


def chain_pins(chain: Sequence[x509.Certificate]) -> tuple[Hop, ...]:
    """The pins of the CAs of a verified chain (leaf first), top-down.

    A leaf's pin extension means nothing (the leaf is the delegate's own) and is not
    read.  Raises :class:`PinRefusal` for a pin that does not decode.
    """
    return ca_pins(list(reversed(chain[1:])))


def ca_pins(cas: Sequence[x509.Certificate]) -> tuple[Hop, ...]:
    """The pins of *cas* (top-down: the root side first), each named by its hop.

    The path of a hop is its delegation's CN path, as :func:`core.authorize.authorize`
    derives it; a CA without the albatross extension (a root the client sent) is named
    by its subject.  Raises :class:`PinRefusal` for a pin that does not decode.
    """
    hops: list[Hop] = []
    try:
        paths = {id(cert): path for path, cert in certs.delegation_hops(cas)}
    except ParseError as exc:
        raise PinRefusal(f"the chain's delegations: {exc.message}") from exc
    for cert in cas:
        path = paths.get(id(cert))
        label = subject_text(cert) if path is None else str(Name(path, None))
        try:
            pins = certs.pins_of(cert)
        except ParseError as exc:
            raise PinRefusal(f"certificate {subject_text(cert)}: {exc.message}") from exc
        if pins is not None:
            hops.append(Hop(label, pins))
    return tuple(hops)


def build_refusal(hops: Sequence[Hop], job: str, digest: bytes) -> str | None:
    """Why a builder-web build (*job*, image *digest*) may not run under *hops*, or None.

    The client's check before ``update`` deploys: job pins (which only it can check,
    having asked builder-web) and digest pins (which the endpoint checks again).
    """
    refused = job_refusal([(hop.path, hop.pins) for hop in hops], job)
    if refused is not None:
        return refused
    try:
        check_digest(hops, digest, f"the latest build of {job}: image")
    except PinRefusal as exc:
        return exc.message
    return None


#: Most octets a compressed image may inflate to for its digest (a zip bomb is refused).
MAX_INFLATED = 1 << 30
_SLICE = 1 << 16


def image_digest(config: UnikernelConfig, max_inflated: int = MAX_INFLATED) -> bytes:
    """SHA-256 of the request's image, uncompressed; inflated in slices, never held whole."""
    if not config.compressed:
        return hashlib.sha256(config.image).digest()
    digest = hashlib.sha256()
    inflate = StreamDecompressor(max_inflated)
    data = memoryview(config.image)
    try:
        for start in range(0, len(data), _SLICE):
            digest.update(inflate.feed(bytes(data[start : start + _SLICE])))
        inflate.finish()
    except ParseError as exc:
        raise PinRefusal(f"cannot check the image against the pins: {exc.message}") from exc
    return digest.digest()


def check_digest(hops: Sequence[Hop], digest: bytes, what: str = "image") -> None:
    """Refuse unless every hop that pins digests lists *digest*; the refusal names the hop."""
    for hop in hops:
        if not hop.pins.allows_digest(digest):
            raise PinRefusal(
                f"{what} sha256 {digest.hex()} is not pinned by the delegation {hop.path}"
                f" ({len(hop.pins.digests or ())} digest(s) allowed): ask its delegator to add"
                " it, or deploy a pinned build"
            )


def pins_digests(hops: Sequence[Hop]) -> bool:
    """Whether any hop restricts digests (only then is a check worth an image hash)."""
    return any(hop.pins.digests is not None for hop in hops)
