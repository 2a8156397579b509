"""Certificates for the security tests, issued with the project's own profiles."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509

from ca import profiles
from ca.profiles import PrivateKey
from core.pins import Pins
from core.wire import Command, Policy, UnikernelConfig, UnikernelCreate

__all__ = ["NOW", "Ca", "create", "policy", "root"]

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


def policy(
    unikernels: int = 10,
    memory: int = 1024,
    block: int | None = 100,
    cpuids: frozenset[int] = frozenset({0, 1}),
    bridges: frozenset[str] = frozenset({"service"}),
) -> Policy:
    return Policy(unikernels, cpuids, memory, block, bridges)


def create(memory: int = 32, force: bool = False) -> UnikernelCreate:
    return UnikernelCreate(UnikernelConfig(image=b"\x7fELF", memory=memory), force=force)


@dataclass
class Ca:
    """A CA (root or delegation) with its key and the verified chain above it (not the root)."""

    cert: x509.Certificate
    key: PrivateKey
    above: tuple[x509.Certificate, ...] = ()

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """This CA and the delegations above it, deepest first (root excluded)."""
        if self.cert.subject == self.cert.issuer:
            return ()
        return (self.cert, *self.above)

    def delegate(
        self,
        cn: str,
        pol: Policy,
        *,
        now: dt.datetime = NOW,
        days: int = 365,
        serial: int | None = None,
        not_before: dt.datetime | None = None,
        pins: Pins | None = None,
    ) -> Ca:
        key = profiles.generate_key()
        cert = profiles.intermediate(
            self.cert, self.key, key.public_key(), cn, pol, now, days, serial, not_before,
            pins=pins,
        )  # fmt: skip
        return Ca(cert, key, self.chain)

    def leaf_chain(
        self, cn: str, command: Command, *, now: dt.datetime = NOW, seconds: int = 300
    ) -> list[x509.Certificate]:
        """A verified chain as the endpoint sees it: leaf first, root excluded."""
        key = profiles.generate_key()
        leaf = profiles.leaf(self.cert, self.key, key.public_key(), cn, command, now, seconds)
        return [leaf, *self.chain]


def root(cn: str = "ca") -> Ca:
    key = profiles.generate_key()
    return Ca(profiles.root_ca(key, cn, NOW), key)
