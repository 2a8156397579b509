"""Resource policies (Vmm_core.Policy) and the checks albatross makes with them.

A policy bounds what may run at a path: a number of unikernels, a set of CPU
ids, memory and block storage in MB, and a set of bridges.  The messages below
are albatross's own texts (``src/vmm_core.ml``), because the real client prints
them and users' scripts grep for them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.errors import PolicyError, UsageError

__all__ = ["Policy", "effective_bridges"]

#: OCaml's ``max_int`` (2^62-1): the unikernel count of a discovered root policy.
MAX_INT = (1 << 62) - 1


def _ints(values: Iterable[int]) -> str:
    return ",".join(str(v) for v in sorted(values))


def _list(values: Iterable[object], sep: str = ", ") -> str:
    return sep.join(str(v) for v in sorted(values))  # type: ignore[type-var]


@dataclass(frozen=True, slots=True)
class Policy:
    """What may run at one path; ``block is None`` means no block devices at all."""

    unikernels: int
    cpuids: frozenset[int]
    memory: int
    block: int | None = None
    bridges: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        # Accept any iterable for convenience, but store frozensets so values compare.
        if not isinstance(self.cpuids, frozenset):
            object.__setattr__(self, "cpuids", frozenset(self.cpuids))
        if not isinstance(self.bridges, frozenset):
            object.__setattr__(self, "bridges", frozenset(self.bridges))

    # -- text -------------------------------------------------------------

    def describe(self) -> str:
        """albatross's text without the ``policy: `` prefix (as ``sign`` prints it)."""
        block = "no" if self.block is None else f"{self.block} MB"
        text = (
            f"{self.unikernels} unikernels {_ints(self.cpuids)} CPUids "
            f"{self.memory} MB memory {block} block"
        )
        if self.bridges:
            text += ", bridges: " + _list(self.bridges)
        return text

    def __str__(self) -> str:
        return "policy: " + self.describe()

    # -- checks -----------------------------------------------------------

    def check_usable(self) -> None:
        """Raise :class:`UsageError` if the policy could never run anything (``Policy.usable``)."""
        if self.unikernels <= 0:
            raise UsageError("Unusable policy with no unikernels")
        if not self.cpuids:
            raise UsageError("Unusable policy with no CPUids")
        if self.memory <= 16:
            raise UsageError(f"Unusable policy with memory {self.memory} MB <= 16 MB")
        if self.block is not None and self.block < 0:
            raise UsageError(f"Unusable policy with block {self.block} MB < 0 MB")

    def check_within(self, parent: Policy) -> None:
        """Raise :class:`PolicyError` unless this policy is within *parent* (``is_smaller``).

        The checks and their order are albatross's; the first failure wins.
        """
        if parent.unikernels < self.unikernels:
            raise PolicyError(
                f"policy above allows {parent.unikernels} unikernels, "
                f"which is fewer than {self.unikernels}"
            )
        if parent.memory < self.memory:
            raise PolicyError(
                f"policy above allows {parent.memory} MB memory, "
                f"which is fewer than {self.memory} MB"
            )
        if not self.cpuids <= parent.cpuids:
            raise PolicyError(
                "policy above does not allow CPUids " + _list(self.cpuids - parent.cpuids)
            )
        if not self.bridges <= parent.bridges:
            raise PolicyError(
                f"policy above allows bridge(s) {_list(parent.bridges)}, "
                f"which is not a superset of {_list(self.bridges)}"
            )
        block_ok = self.block is None or (parent.block is not None and parent.block >= self.block)
        if not block_ok:
            raise PolicyError(
                f"policy above allows {parent.block or 0} MB block storage, "
                f"which is fewer than {self.block or 0} MB"
            )

    def is_within(self, parent: Policy) -> bool:
        try:
            self.check_within(parent)
        except PolicyError:
            return False
        return True

    def check_fits(self, cpuids: frozenset[int], memory: int, bridges: Iterable[str]) -> None:
        """Raise :class:`PolicyError` unless one unikernel with these resources fits.

        This is the client-side check (``Unikernel.fine_with_policy``), made before
        a leaf certificate is signed; the daemon's check also counts usage.
        """
        if not cpuids <= self.cpuids:
            raise PolicyError(
                f"the CPUids {_list(cpuids - self.cpuids)} requested by the unikernel "
                "are not allowed by policy"
            )
        if memory > self.memory:
            raise PolicyError(
                f"{memory} MB memory assigned to unikernel exceeds policy ({self.memory}MB)"
            )
        disallowed = [b for b in bridges if b not in self.bridges]
        if disallowed:
            raise PolicyError(
                f"Bridge(s) {', '.join(disallowed)} not allowed by policy "
                f"(available: {_list(self.bridges)})"
            )


def effective_bridges(bridges: Iterable[tuple[str, str | None]]) -> list[str]:
    """The host bridge of each (unikernel device, optional bridge) pair."""
    return [bridge if bridge is not None else netif for netif, bridge in bridges]
