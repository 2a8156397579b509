"""Certificate expiry, before it bites (pure).

A delegation expires silently: the first sign is a refused command.  So the
client looks at the chain it is about to use and says, once per command and on
stderr, which certificate expires within :data:`WARN_WITHIN` (or has expired),
with its CN and date.  The same reading gives ``alba remote list`` each remote's
expiry and ``alba tree`` the expiry of every delegation whose certificate it
has seen locally: a delegation certificate carries its path in its CN chain
(:func:`delegation_paths`, the endpoint's walk of :mod:`core.authorize`).

The time is a parameter (:mod:`core.clock`); nothing here reads the clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509

from core.certs import common_name, delegation_hops, policy_of
from core.errors import AlbatrossError

__all__ = [
    "WARN_WITHIN",
    "Expiry",
    "delegation_paths",
    "expiring",
    "soonest",
    "warning_text",
]

#: Warn when a certificate of the chain expires within this long.
WARN_WITHIN = dt.timedelta(days=14)


@dataclass(frozen=True, slots=True)
class Expiry:
    """One certificate's end of validity."""

    cn: str
    not_after: dt.datetime  # UTC

    def days_left(self, now: dt.datetime) -> int:
        """Whole days from *now* to the end (negative once expired)."""
        return (self.not_after - now).days

    def date(self) -> str:
        return self.not_after.strftime("%Y-%m-%d %H:%M UTC")

    def soon(self, now: dt.datetime, within: dt.timedelta = WARN_WITHIN) -> bool:
        """Ends before ``now + within`` (the warning's rule; expired ones too)."""
        return self.not_after < now + within

    def expired(self, now: dt.datetime) -> bool:
        return self.not_after <= now


def _expiry(cert: x509.Certificate) -> Expiry:
    try:
        cn = common_name(cert)
    except AlbatrossError:
        cn = None
    return Expiry(cn if cn is not None else "(no CN)", cert.not_valid_after_utc)


def expiring(
    chain: Iterable[x509.Certificate], now: dt.datetime, within: dt.timedelta = WARN_WITHIN
) -> list[Expiry]:
    """The certificates of *chain* that end before ``now + within``, soonest first."""
    found = [_expiry(c) for c in chain]
    return sorted((e for e in found if e.soon(now, within)), key=lambda e: e.not_after)


def soonest(chain: Iterable[x509.Certificate]) -> Expiry | None:
    """The certificate of *chain* that expires first (None for an empty chain)."""
    found = [_expiry(c) for c in chain]
    return min(found, key=lambda e: e.not_after) if found else None


def warning_text(prog: str, expiry: Expiry, now: dt.datetime) -> str:
    """The stderr line for one certificate that expires soon or has expired."""
    if expiry.expired(now):
        return (
            f"{prog}: warning: the certificate {expiry.cn} of your chain expired on "
            f"{expiry.date()}: ask for a new delegation\n"
        )
    days = expiry.days_left(now)
    left = "less than a day" if days == 0 else f"{days} day{'s' if days != 1 else ''}"
    return (
        f"{prog}: warning: the certificate {expiry.cn} of your chain expires on "
        f"{expiry.date()} (in {left}): renew it before then\n"
    )


def delegation_paths(chain: Sequence[x509.Certificate]) -> dict[tuple[str, ...], Expiry]:
    """The delegation path each certificate of *chain* (leaf or CA first, any order) stands for.

    The chain is walked top-down as the endpoint does: a certificate without a
    policy contributes no label (a root), one with a policy appends its lower-cased
    CN.  A certificate whose CN or extension does not read ends the walk: what
    follows it has no path we could trust.
    """
    out: dict[tuple[str, ...], Expiry] = {}
    try:
        for path, cert in delegation_hops(_top_down(chain)):
            if policy_of(cert) is None:
                continue  # the leaf: a command, not a delegation
            if not path[-1]:
                break
            out[path] = _expiry(cert)
    except AlbatrossError:
        pass  # the walk ends at a certificate that does not read
    return out


def _top_down(chain: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """*chain* ordered from the top: a PEM chain file lists the signing CA first."""
    certs = list(chain)
    if len(certs) > 1 and certs[0].issuer == certs[1].subject:
        certs.reverse()
    return certs
