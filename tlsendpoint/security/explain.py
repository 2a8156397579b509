# Explain, offline, whether the endpoint would allow a request (issue 6 point 9).
#
# The verdict runs the endpoint's own checks, in the endpoint's order, through
# the same functions (core.authorize and the pure rules of rules/: naming,
# revocation, rollback, pins, quota), so the reason printed here is the exact text of
# the endpoint's Failure reply.  The state they judge against (CRLs, the
# anti-rollback table, the daemon's usage) is read by the caller and passed in.  Only the
# TLS layer is imitated: validity dates and signatures, which OpenSSL checks
# during the handshake (a failure there gets no reply at all).
#
# Without daemon-reported usage the dynamic quota check assumes nothing else
# runs (the verdict says so): "allowed" then means "allowed on an idle host".
#
# Imports: the protocol core, the CA toolkit (to mint a leaf like albatross-client)
# and the pure rules; no state store and no trio - the caller (client/audit_cli.py)
# reads the CRLs, the anti-rollback table and the usage and passes them in.
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from ca.bundle import Bundle
from ca.profiles import PrivateKey, generate_key, leaf
from core.authorize import Refusal, authorize
from core.chainrules import subject_text
from core.routing import command_name
from core.wire import Command, Policy, UnikernelCreate, UnikernelRestart
from tlsendpoint.security import SecurityRefusal
from tlsendpoint.security.rules.naming import check_object_name
from tlsendpoint.security.rules.pins import (
    Hop,
    chain_pins,
    check_digest,
    image_digest,
    pins_digests,
)
from tlsendpoint.security.rules.quota import (
    QuotaError,
    Usage,
    check_delegations,
    check_usage,
    demand_of,
)
from tlsendpoint.security.rules.revocation import Revocations
from tlsendpoint.security.rules.rollback import Seen, delegations
from tlsendpoint.security.rules.rollback import check as check_rollback

__all__ = ["Verdict", "explain_bundle", "explain_chain", "explain_signer"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The endpoint's decision on a request, and why."""

    allowed: bool
    stage: str  # which check decided: tls, authorize, name, revocation, rollback, pins,
    # delegation, quota, ok
    name: str | None = None
    command: str | None = None
    reason: str | None = None  # the Failure text the endpoint sends (None when allowed)
    hop: str | None = None  # the delegation path (or "host") that refuses
    field: str | None = None
    limit: object = None
    used: object = None
    requested: object = None
    notes: tuple[str, ...] = ()

    def text(self) -> str:
        head = "allowed" if self.allowed else f"refused ({self.stage})"
        lines = [f"{head}: {self.command or '?'} as {self.name or '?'}"]
        if self.reason:
            lines.append(f"reason: {self.reason}")
        if self.field is not None:
            numbers = f"limit {self.limit}, requested {self.requested}"
            if self.used is not None:
                numbers += f", used {self.used}"
            lines.append(f"refused by: {self.hop}, field {self.field} ({numbers})")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _tls_problem(
    chain: Sequence[x509.Certificate], anchor: x509.Certificate | None, now: dt.datetime
) -> str | None:
    for cert in chain:
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return (
                f"certificate {subject_text(cert)} is not valid now ({now:%Y-%m-%d %H:%M:%S} UTC): "
                f"valid from {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} "
                f"to {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
            )
    issuers = [*chain[1:], *([anchor] if anchor is not None else [])]
    for cert, issuer in zip(chain, issuers, strict=False):
        if cert.subject == cert.issuer and issuer is anchor:
            continue
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            return f"certificate {subject_text(cert)} is not signed by {subject_text(issuer)}"
    return None


def explain_chain(
    chain: Sequence[x509.Certificate],
    now: dt.datetime,
    *,
    anchor: x509.Certificate | None = None,
    root_policy: Policy | None = None,
    usage: Usage | None = None,
    crls: Revocations | None = None,
    rollback: Mapping[str, Seen] | None = None,
) -> Verdict:
    """Would the endpoint allow the request of *chain* (leaf first) at *now*?"""
    problem = _tls_problem(chain, anchor, now)
    if problem is not None:
        return Verdict(False, "tls", reason=problem, notes=("the endpoint closes the handshake",))
    try:
        request = authorize(chain)
    except Refusal as exc:
        return Verdict(False, "authorize", reason=exc.message)
    name, what = str(request.name), command_name(request.command)
    notes: list[str] = []
    stage = "name"
    try:
        check_object_name(request)
        stage = "revocation"
        if crls is not None:
            crls.check(chain)
        else:
            notes.append("revocation not checked (no CRL directory given)")
        stage = "rollback"
        if rollback is not None:
            check_rollback(delegations(chain), rollback)
        stage = "pins"
        hops = chain_pins(chain)
        notes += [f"delegation {hop.path} pins {hop.pins.text()}" for hop in hops]
        notes += _check_pins(hops, request.command)
        demand = demand_of(request.name, request.command)
        if demand is not None:  # the endpoint's quota guard: only requests that add resources
            stage = "delegation"
            check_delegations(request.policies)
            if root_policy is None:
                notes.append("host limits not checked (no root policy given)")
            stage = "quota"
            if usage is None:
                notes.append("usage unknown: assumed nothing else runs on the host")
            check_usage(request.policies, root_policy, usage or Usage(), demand)
    except QuotaError as exc:
        return Verdict(
            False, stage, name, what, exc.message, "host" if exc.hop.is_root else str(exc.hop),
            exc.field,
            exc.limit, exc.used, exc.requested, tuple(notes),
        )  # fmt: skip
    except SecurityRefusal as exc:
        return Verdict(False, stage, name, what, exc.message, notes=tuple(notes))
    return Verdict(True, "ok", name, what, notes=tuple(notes))


def _check_pins(hops: Sequence[Hop], command: Command) -> list[str]:
    """The endpoint's pin check where it can be made offline; notes for the rest."""
    notes: list[str] = []
    if not pins_digests(hops):
        return notes
    if isinstance(command, UnikernelCreate):
        if command.config.image:
            check_digest(hops, image_digest(command.config))
        else:
            notes.append("the image is uploaded after the handshake: its digest is checked then")
    elif isinstance(command, UnikernelRestart):
        notes.append("a restart is checked against the digest of the image vmmd runs")
    return notes


def explain_signer(
    signer_chain: Sequence[x509.Certificate],
    key: PrivateKey,
    cn: str,
    command: Command,
    now: dt.datetime,
    *,
    anchors: Sequence[x509.Certificate] = (),
    root_policy: Policy | None = None,
    usage: Usage | None = None,
    crls: Revocations | None = None,
    rollback: Mapping[str, Seen] | None = None,
) -> Verdict:
    """As :func:`explain_chain` for a leaf with *cn* and *command* signed by *key*.

    *signer_chain* is the delegated CA first, then its issuers (a bundle's chain, a
    remote's ``ca`` file).  The leaf is minted here with a throwaway key, as
    albatross-client does per command.
    """
    cert = leaf(signer_chain[0], key, generate_key().public_key(), cn, command, now)
    chain = [cert, *(c for c in signer_chain if c.subject != c.issuer)]
    anchor = next((a for a in anchors if a.subject == chain[-1].issuer), None)
    return explain_chain(
        chain, now, anchor=anchor, root_policy=root_policy, usage=usage, crls=crls,
        rollback=rollback,
    )  # fmt: skip


def explain_bundle(
    bundle: Bundle,
    cn: str,
    command: Command,
    now: dt.datetime,
    *,
    root_policy: Policy | None = None,
    usage: Usage | None = None,
    crls: Revocations | None = None,
    rollback: Mapping[str, Seen] | None = None,
) -> Verdict:
    """:func:`explain_signer` for a delegation bundle."""
    return explain_signer(
        bundle.chain, bundle.key, cn, command, now, anchors=bundle.server_ca,
        root_policy=root_policy, usage=usage, crls=crls, rollback=rollback,
    )  # fmt: skip
