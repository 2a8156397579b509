# Quotas that cannot be multiplied by sub-delegation (issue 6 points 1 and 2).
#
# albatross checks a create only against the policy at the unikernel's own path
# (behaviour.md §3.6, §9.2): a delegate with a quota of 1 can sign two sub-CAs
# with 1 each and run 2.  We check, before a create, restart-with-arguments or
# block add, *every* ancestor on the chain and the host itself:
#
# * static: each delegation's policy within its issuer's (albatross is_smaller);
# * the host has what is asked for: a CPU id or bridge missing from the root
#   policy the daemon reports is refused (it cannot work), with a text saying so;
# * dynamic: for every ancestor path P (deepest first, then the root), the usage
#   of P's whole subtree + the reservations of requests still in flight + the
#   new request must fit P's policy.  Siblings may be over-committed on paper
#   (albatross allows that), but usage can never exceed any ancestor nor the host.
#
# The host rule is about requests only.  albatross 2.7.2 never compares a
# delegation with the root policy: Vmm_resources.insert_policy checks the
# policies above a path up to, not including, the root (check_policies_above),
# albatrossd re-inserts stored policies root first (Vmm_trie.all is pre-order),
# and a create meets only the policy at its own path (check_unikernel).  A
# delegate's create asking for a missing bridge fails later, in Vmm_unix.prepare
# ("interface service does not exist"); a missing CPU id is not checked at all
# (taskset fails in the new process).  The root policy's bridges are those
# albatrossd found when it started (Vmm_unix.root_policy).  So a policy naming
# bridge service is usable on a host without bridges for every create without
# a network; we refuse only a request for what the host lacks, in albatross's
# words for a request outside the root policy first (check_policy, what the
# operator gets at the root path: "bridges service not allowed by policy").
#
# Usage is attributed by albatross's trie key (``Name.is_below``), the same
# rule the daemon uses, so a unikernel named with a path-only name (leaf CN
# ".") still counts against the delegate.  That over-counts at worst (the
# operator's ``:alice`` counts against delegate ``alice``), never under-counts.
#
# Concurrency: :mod:`.reservations` adds the requests still in flight
# (``pending`` of :func:`check_usage`).
# Pure: values in, values or QuotaError out.  No I/O, no clock.
from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from core.errors import PolicyError
from core.wire import (
    ROOT,
    BlockAdd,
    BlockAddOld,
    BlockDeviceList,
    BlockInfo,
    Command,
    Name,
    Policy,
    PolicyInfo,
    PolicyList,
    UnikernelCreate,
    UnikernelInfo,
    UnikernelInfoList,
    UnikernelRestart,
)
from tlsendpoint.security import SecurityRefusal

__all__ = [
    "Demand",
    "QuotaError",
    "Totals",
    "Usage",
    "check_delegations",
    "check_usage",
    "demand_of",
    "hop_text",
    "root_policy_from",
    "usage_from_replies",
    "usage_queries",
]


class QuotaError(SecurityRefusal):
    """A request or delegation exceeds a policy; names the hop and the field with numbers."""

    def __init__(
        self,
        message: str,
        *,
        hop: Name,
        field: str,
        limit: object = None,
        used: object = None,
        requested: object = None,
    ) -> None:
        super().__init__(message)
        self.hop = hop
        self.field = field
        self.limit = limit
        self.used = used
        self.requested = requested


def hop_text(path: Name) -> str:
    """How a refusal names a hop: the host, or the delegation's path and certificate CN."""
    if path.is_root:
        return "host (root policy)"
    return f"delegation {path} (certificate CN {path.path[-1]})"


# -- what a request adds ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Demand:
    """What one request adds to the usage of every ancestor path."""

    unikernels: int = 0
    memory: int = 0
    cpuids: frozenset[int] = frozenset()
    bridges: frozenset[str] = frozenset()
    block: int = 0
    replaces: Name | None = None  # force-create / restart: this unikernel goes away first


def demand_of(name: Name, command: Command) -> Demand | None:
    """The resources *command* at *name* would add, or None if it adds none."""
    if isinstance(command, UnikernelCreate):
        config = command.config
        return Demand(
            unikernels=1,
            memory=config.memory,
            cpuids=config.cpuids,
            bridges=frozenset(n.bridge or n.name for n in config.bridges),
            replaces=name if command.force else None,
        )
    if isinstance(command, UnikernelRestart):
        args = command.arguments
        if args is None:  # same configuration again: nothing new
            return None
        return Demand(
            unikernels=1,
            memory=args.memory,
            cpuids=args.cpuids,
            bridges=frozenset(n.bridge or n.name for n in args.bridges),
            replaces=name,
        )
    if isinstance(command, BlockAdd | BlockAddOld):
        return Demand(block=command.size)
    return None


# -- usage as the daemon reports it ----------------------------------------------


@dataclass(frozen=True, slots=True)
class _Running:
    memory: int
    cpuids: frozenset[int]
    bridges: frozenset[str]


@dataclass(frozen=True, slots=True)
class Totals:
    """Summed usage of one subtree."""

    unikernels: int = 0
    memory: int = 0
    cpuids: frozenset[int] = frozenset()
    bridges: frozenset[str] = frozenset()
    block: int = 0

    def plus(self, demand: Demand) -> Totals:
        return Totals(
            self.unikernels + demand.unikernels,
            self.memory + demand.memory,
            self.cpuids | demand.cpuids,
            self.bridges | demand.bridges,
            self.block + demand.block,
        )


@dataclass(frozen=True, slots=True)
class Usage:
    """Every unikernel and block device below some path, by absolute name."""

    unikernels: dict[Name, _Running] = field(default_factory=dict)
    blocks: dict[Name, int] = field(default_factory=dict)

    def merged(self, other: Usage) -> Usage:
        return Usage({**self.unikernels, **other.unikernels}, {**self.blocks, **other.blocks})

    def totals(self, path: Name, without: Name | None = None) -> Totals:
        """The usage of *path*'s subtree (albatross trie-key rule), leaving out *without*."""
        count, memory = 0, 0
        cpuids: set[int] = set()
        bridges: set[str] = set()
        for name, running in self.unikernels.items():
            if name.is_below(path.path) and (without is None or name.key != without.key):
                count += 1
                memory += running.memory
                cpuids |= running.cpuids
                bridges |= running.bridges
        block = sum(size for name, size in self.blocks.items() if name.is_below(path.path))
        return Totals(count, memory, frozenset(cpuids), frozenset(bridges), block)


def usage_queries() -> list[tuple[Name, Command]]:
    """The (name, command) queries whose replies :func:`usage_from_replies` needs.

    One snapshot of the whole host (root info and block info) serves every
    ancestor: fewer round trips, and one consistent view; root policy info gives
    the host's limits (:func:`root_policy_from`).
    """
    return [(ROOT, PolicyInfo()), (ROOT, UnikernelInfo()), (ROOT, BlockInfo())]


def usage_from_replies(at: Name, info: UnikernelInfoList, blocks: BlockDeviceList) -> Usage:
    """Usage from the daemon's replies to info and block info for path *at*.

    The daemon names entries relative to *at* (behaviour.md §3.7, §3.8); we keep
    absolute names so replies for different paths can be merged.
    """
    unikernels = {
        name.under(at.path): _Running(
            record.memory, record.cpuids, frozenset(n.bridge for n in record.bridges)
        )
        for name, record in info.unikernels
    }
    sizes = {entry.name.under(at.path): entry.size for entry in blocks.devices}
    return Usage(unikernels, sizes)


def root_policy_from(reply: PolicyList) -> Policy | None:
    """The root policy in a policy info reply for ``:``, None if the host has none."""
    for name, policy in reply.policies:
        if name.is_root:
            return policy
    return None


# -- the checks -------------------------------------------------------------------


def _first_excess(sub: Policy, parent: Policy) -> tuple[str, object, object]:
    """(field, limit, requested) of the first check of albatross's is_smaller that fails."""
    if parent.unikernels < sub.unikernels:
        return "unikernels", parent.unikernels, sub.unikernels
    if parent.memory < sub.memory:
        return "memory", parent.memory, sub.memory
    if not sub.cpuids <= parent.cpuids:
        return "cpuids", sorted(parent.cpuids), sorted(sub.cpuids)
    if not sub.bridges <= parent.bridges:
        return "bridges", sorted(parent.bridges), sorted(sub.bridges)
    return "block", parent.block, sub.block


def check_delegations(policies: Sequence[tuple[Name, Policy]]) -> None:
    """Each delegation's policy within its issuer's (albatross ``Policy.is_smaller``).

    *policies* is :attr:`Request.policies` (deepest first).  The top-level one is
    not compared with the root policy (albatross does not either, see the module
    comment): what the host lacks is refused per request by :func:`check_usage`.
    Raises :class:`QuotaError`.
    """
    for (path, policy), (parent_path, parent) in itertools.pairwise(policies):
        try:
            policy.check_within(parent)
        except PolicyError as exc:
            field_name, limit, requested = _first_excess(policy, parent)
            raise QuotaError(
                f"{exc.message}: the policy of {hop_text(path)} is not within the policy of"
                f" {hop_text(parent_path)}",
                hop=path,
                field=field_name,
                limit=limit,
                requested=requested,
            ) from None


def _listing(values: list[int] | list[str]) -> str:
    return ", ".join(str(v) for v in values)


def _excess(path: Name, policy: Policy, used: Totals, demand: Demand) -> QuotaError | None:
    """The first field of *policy* that *used* + *demand* exceeds, as a refusal.

    The text starts with albatross's own words for the field (vmm_resources.ml; users
    grep for them), then names the hop whose whole subtree is full, with the numbers.
    """
    adds = demand.unikernels > 0
    block_limit = 0 if policy.block is None else policy.block
    cpus, bridges = sorted(demand.cpuids - policy.cpuids), sorted(demand.bridges - policy.bridges)
    checks: list[tuple[bool, str, str, object, object, object]] = [
        (
            adds and used.unikernels + demand.unikernels > policy.unikernels,
            "unikernels",
            f"maximum amount of unikernels ({policy.unikernels}) reached",
            policy.unikernels, used.unikernels, demand.unikernels,
        ),
        (
            adds and used.memory + demand.memory > policy.memory,
            "memory",
            f"maximum allowed memory ({policy.memory}, used {used.memory}) would be exceeded"
            f" (requesting {demand.memory})",
            policy.memory, used.memory, demand.memory,
        ),
        (
            bool(cpus),
            "cpuids",
            f"CPUids {_listing(cpus)} are not allowed by policy",
            sorted(policy.cpuids), sorted(used.cpuids), sorted(demand.cpuids),
        ),
        (
            bool(bridges),
            "bridges",
            f"bridges {_listing(bridges)} not allowed by policy",
            sorted(policy.bridges), sorted(used.bridges), sorted(demand.bridges),
        ),
        (
            demand.block > 0 and policy.block is None,
            "block",
            "no block devices are allowed by policy",
            0, used.block, demand.block,
        ),
        (
            demand.block > 0 and used.block + demand.block > block_limit,
            "block",
            f"block device policy limit of {block_limit} MB (used {used.block} MB) would be"
            f" exceeded by the request ({demand.block} MB)",
            block_limit, used.block, demand.block,
        ),
    ]  # fmt: skip
    for failed, field_name, text, limit, in_use, requested in checks:
        if failed:
            return QuotaError(
                f"{text} in the whole subtree of {hop_text(path)}, field {field_name}"
                f" (limit {limit}, used {in_use}, requested {requested})",
                hop=path,
                field=field_name,
                limit=limit,
                used=in_use,
                requested=requested,
            )
    return None


def _not_on_host(root: Policy, demand: Demand) -> QuotaError | None:
    """A CPU id or bridge the host lacks (not in its root policy), as a refusal.

    Such a request can never work, whatever runs; so it is refused first, in
    albatross's words for a request outside the root policy, then plainly.
    """
    cpus, bridges = sorted(demand.cpuids - root.cpuids), sorted(demand.bridges - root.bridges)
    if cpus:
        listed, have = _listing(cpus), _listing(sorted(root.cpuids)) or "none"
        ids = "CPU id " + listed + " is" if len(cpus) == 1 else "CPU ids " + listed + " are"
        return QuotaError(
            f"CPUids {listed} are not allowed by policy: {ids} not present on this host"
            f" (the host's CPU ids: {have})",
            hop=ROOT, field="cpuids", limit=sorted(root.cpuids), requested=sorted(demand.cpuids),
        )  # fmt: skip
    if bridges:
        listed, have = _listing(bridges), _listing(sorted(root.bridges)) or "none"
        names = "bridge " + listed + " is" if len(bridges) == 1 else "bridges " + listed + " are"
        return QuotaError(
            f"bridges {listed} not allowed by policy: {names} not present on this host"
            f" (the host's bridges: {have}; albatrossd finds the bridges when it starts)",
            hop=ROOT, field="bridges", limit=sorted(root.bridges),
            requested=sorted(demand.bridges),
        )  # fmt: skip
    return None


def check_usage(
    policies: Sequence[tuple[Name, Policy]],
    root: Policy | None,
    usage: Usage,
    demand: Demand,
    pending: Iterable[tuple[Name, Demand]] = (),
) -> None:
    """The host has what *demand* asks for; every ancestor's usage stays within its policy.

    First a CPU id or bridge missing from *root* (the host lacks it: nothing can
    make that request work).  Then, per ancestor, its subtree's usage + in-flight
    *pending* + *demand*: *pending* are (target name, demand) of requests granted
    but not yet visible in *usage*; each counts (in full) for the ancestors of its
    target.  Checks deepest first, then the host (when *root* is known), so the
    refusal names the closest hop that is full.  Raises :class:`QuotaError`.
    """
    if root is not None:
        missing = _not_on_host(root, demand)
        if missing is not None:
            raise missing
    in_flight = list(pending)
    hops = [*policies, *([(ROOT, root)] if root is not None else [])]
    for path, policy in hops:
        used = usage.totals(path, without=demand.replaces)
        for target, other in in_flight:
            if target.is_below(path.path):
                used = used.plus(other)
        refusal = _excess(path, policy, used, demand)
        if refusal is not None:
            raise refusal
