"""Reproducible-build pins: what a delegation's subtree may run (ours; albatross ignores it).

A delegation CA may carry the non-critical extension
:data:`core.certs.PIN_EXTENSION_OID` (a UUID-based ``2.25`` arc, so no one's arc is
used) whose value is, in DER::

    AlbatrossGatewayPins ::= SEQUENCE {
      version  INTEGER (1),
      digests  [0] EXPLICIT SET SIZE (1..MAX_DIGESTS) OF OCTET STRING (SIZE (32)) OPTIONAL,
      jobs     [1] EXPLICIT SET SIZE (1..MAX_JOBS) OF UTF8String OPTIONAL
    }  -- at least one of digests and jobs

*digests* are SHA-256 digests of unikernel images, uncompressed (what albatross reports
as a unikernel's digest and what builder-web publishes as ``/hash?sha256=``); *jobs* are
builder-web job names (``/job/NAME/``).

Who enforces what.  The endpoint sees the image's bytes and nothing else: it checks
*digests* (every hop that lists digests must list the image's: the pins intersect
down the chain).  Whether an image is a build of some builder-web job can only be
answered by asking builder-web over the network, which the endpoint must not do on a
request's path (no new way to hang, no outside party in the decision), so *jobs* are
enforced by the client: ``alba update`` refuses a build whose job a hop did not list.
A hop that pins only jobs therefore restricts the endpoint in nothing; ``alba ca
delegate`` warns about that, and the inspector and ``alba explain`` say it.

Why the project's own DER combinators (:mod:`core.wire.der`) and not pyasn1 (a
dependency, used only by the benchmarks): the combinators are the strict DER reader
the endpoint already trusts for albatross's extension (minimal lengths, SET OF in DER
order without duplicates, nothing trailing), and they name the failing field;
pyasn1's decoder accepts BER forms we would have to re-check by hand.

Decoding is strict and bounded: a wrong version, an empty or oversized set, a digest
that is not 32 octets or a job name outside builder-web's characters is a
:class:`~core.errors.ParseError`.  Pure: bytes and values in, values or errors out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from core.errors import ParseError, UsageError
from core.wire.der import INTEGER, OCTETS, UTF8, Explicit, Field, Mapped, Sequence_, SetOf

__all__ = [
    "MAX_DIGESTS",
    "MAX_JOBS",
    "PIN_VERSION",
    "Pins",
    "check_job",
    "decode_pins",
    "encode_pins",
    "job_refusal",
    "make_pins",
    "merge_digests",
    "parse_digest",
]

#: The version this code writes and the only one it reads.
PIN_VERSION = 1
#: Bounds: a certificate is not a release catalogue.
MAX_DIGESTS = 256
MAX_JOBS = 64
_MAX_JOB_LENGTH = 64
# builder-web job names (opam package-like): letters, digits, '-', '_', '.'; no leading dot.
_JOB = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True, slots=True)
class Pins:
    """One hop's pins; ``None`` means "this hop does not restrict that kind"."""

    digests: frozenset[bytes] | None = None
    jobs: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.digests is None and self.jobs is None:
            raise UsageError("a pin needs at least one image digest or builder-web job")
        if self.digests is not None:
            if not 1 <= len(self.digests) <= MAX_DIGESTS:
                raise UsageError(
                    f"between 1 and {MAX_DIGESTS} pinned digests, not {len(self.digests)}"
                )
            for digest in self.digests:
                if len(digest) != 32:
                    raise UsageError(f"a SHA-256 digest has 32 octets, not {len(digest)}")
        if self.jobs is not None:
            if not 1 <= len(self.jobs) <= MAX_JOBS:
                raise UsageError(f"between 1 and {MAX_JOBS} pinned jobs, not {len(self.jobs)}")
            for job in self.jobs:
                check_job(job)

    def allows_digest(self, digest: bytes) -> bool:
        return self.digests is None or digest in self.digests

    def allows_job(self, job: str) -> bool:
        return self.jobs is None or job in self.jobs

    def describe(self) -> dict[str, list[str]]:
        """Sorted hex digests and job names (what the inspector and explain print)."""
        out: dict[str, list[str]] = {}
        if self.digests is not None:
            out["digests"] = sorted(d.hex() for d in self.digests)
        if self.jobs is not None:
            out["jobs"] = sorted(self.jobs)
        return out

    def text(self) -> str:
        parts = []
        if self.digests is not None:
            parts.append("digests " + ", ".join(sorted(d.hex() for d in self.digests)))
        if self.jobs is not None:
            parts.append("jobs " + ", ".join(sorted(self.jobs)) + " (checked by alba update)")
        return "; ".join(parts)


def check_job(job: str) -> str:
    """*job* if it is a builder-web job name; UsageError naming it otherwise."""
    if len(job) > _MAX_JOB_LENGTH or not _JOB.fullmatch(job):
        raise UsageError(
            f"bad builder-web job name {job!r}: 1 to {_MAX_JOB_LENGTH} letters, digits,"
            " '-', '_' or '.', not starting with '.'"
        )
    return job


def parse_digest(text: str) -> bytes:
    """A SHA-256 digest written as 64 hex digits (``sha256sum``'s output)."""
    if not _HEX_DIGEST.fullmatch(text):
        raise UsageError(f"bad SHA-256 digest {text!r}: give 64 hex digits")
    return bytes.fromhex(text)


def make_pins(digests: Sequence[str], jobs: Sequence[str]) -> Pins | None:
    """Pins from a command line (hex digests, job names), None when both are empty."""
    if not digests and not jobs:
        return None
    return Pins(
        frozenset(parse_digest(d) for d in digests) if digests else None,
        frozenset(check_job(j) for j in jobs) if jobs else None,
    )


def _build(version: int, digests: frozenset[bytes] | None, jobs: frozenset[str] | None) -> Pins:
    if version != PIN_VERSION:
        raise UsageError(f"version {version} is not supported (only {PIN_VERSION})")
    # Pins' own checks raise UsageError; Sequence_ turns that into a ParseError.
    return Pins(digests, jobs)


def _digest(value: bytes) -> bytes:
    if len(value) != 32:
        raise ParseError(f"a SHA-256 digest has 32 octets, not {len(value)}")
    return value


def _job(value: str) -> str:
    try:
        return check_job(value)
    except UsageError as exc:
        raise ParseError(exc.message) from None


_PINS: Sequence_[Pins] = Sequence_(
    "pins",
    [
        Field("version", INTEGER),
        Field("digests", Explicit(0, SetOf("digests", Mapped(OCTETS, bytes, _digest))), True),
        Field("jobs", Explicit(1, SetOf("jobs", Mapped(UTF8, str, _job))), True),
    ],
    _build,
    lambda p: (PIN_VERSION, p.digests, p.jobs),
)

#: An upper bound on the encoding of the largest value (a few tags and lengths per element).
_MAX_ENCODED = 16 + MAX_DIGESTS * (2 + 32) + MAX_JOBS * (2 + _MAX_JOB_LENGTH) + 32


def encode_pins(pins: Pins) -> bytes:
    """The extension's value (DER)."""
    return _PINS.encode(pins)


def decode_pins(data: bytes) -> Pins:
    """The extension's value, strictly; ParseError on anything else."""
    if len(data) > _MAX_ENCODED:
        raise ParseError(f"pins: {len(data)} octets, more than {_MAX_ENCODED}")
    return _PINS.decode(data)


def merge_digests(hops: Iterable[Pins]) -> frozenset[bytes] | None:
    """The digests every hop allows (the intersection), None when no hop pins digests."""
    allowed: frozenset[bytes] | None = None
    for pins in hops:
        if pins.digests is not None:
            allowed = pins.digests if allowed is None else allowed & pins.digests
    return allowed


def job_refusal(hops: Sequence[tuple[str, Pins]], job: str) -> str | None:
    """Why a build of *job* may not run under *hops* ((path, pins), top-down), or None."""
    for path, pins in hops:
        if not pins.allows_job(job):
            return (
                f"the delegation {path} pins builder-web jobs {', '.join(sorted(pins.jobs or ()))}:"
                f" job {job} is not one of them"
            )
    return None
