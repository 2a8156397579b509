"""The delegation tree under a path, from three albatross replies (pure).

``alba tree`` asks the daemon (directly or through an endpoint) three things
albatross already answers: policy info, unikernel info and block info at the
caller's path.  Each reply names its entries relative to that path (behaviour.md
§3.7-§3.8, wire.md §12).  :func:`build_tree` puts them together: one
:class:`Node` per path that has a policy, a unikernel or a block device, with

* its policy, and the live usage of its whole subtree - unikernels, memory and
  block storage at and below it, the way vmmd counts them when it checks a
  create or a block add (``Vmm_resources``, :mod:`standin.resources`);
* its headroom (policy minus usage);
* markers: ``FULL`` (a limit reached), ``OVER`` (usage beyond the policy, which
  a policy replaced by a smaller one or the discovered root policy allows),
  ``OVERCOMMITTED`` (the children's policies add up to more than this policy:
  they cannot all use what they were given at once), ``EXPIRES`` (a
  delegation certificate seen locally ends within the warning window).

CPU ids and bridges are sets shared by siblings, not amounts: they are shown,
never summed.  Values in, values out; the time is a parameter.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from client.expiry import Expiry
from core.jsonout import to_json
from core.wire import BlockDeviceEntry, Name, Policy, UnikernelInfoRecord
from core.wire.policy import MAX_INT

__all__ = ["Amounts", "BlockAt", "Node", "UnikernelAt", "build_tree", "render_text", "tree_json"]

_DIMENSIONS = ("unikernels", "memory", "block")
_UNITS = {"unikernels": "unikernels", "memory": "MB memory", "block": "MB block"}


@dataclass(frozen=True, slots=True)
class Amounts:
    """Unikernels, memory (MB) and block storage (MB); ``block`` None: none allowed."""

    unikernels: int
    memory: int
    block: int | None

    def get(self, dimension: str) -> int | None:
        value: int | None = getattr(self, dimension)
        return value


@dataclass(frozen=True, slots=True)
class UnikernelAt:
    name: Name
    memory: int
    cpuids: frozenset[int]
    bridges: frozenset[str]


@dataclass(frozen=True, slots=True)
class BlockAt:
    name: Name
    size: int
    active: bool


@dataclass(frozen=True)
class Node:
    path: tuple[str, ...]  # absolute
    policy: Policy | None
    usage: Amounts
    unikernels: tuple[UnikernelAt, ...] = ()
    blocks: tuple[BlockAt, ...] = ()
    children: tuple[Node, ...] = ()
    expiry: Expiry | None = None
    full: tuple[str, ...] = ()  # dimensions at their limit
    over: tuple[str, ...] = ()  # dimensions beyond their limit
    overcommitted: tuple[tuple[str, int, int], ...] = ()  # (dimension, children's sum, own)
    expires_soon: bool = False

    @property
    def headroom(self) -> Amounts | None:
        if self.policy is None:
            return None
        p = self.policy
        block = None if p.block is None else p.block - (self.usage.block or 0)
        return Amounts(p.unikernels - self.usage.unikernels, p.memory - self.usage.memory, block)

    @property
    def name(self) -> Name:
        return Name(self.path, None)


def _policy_path(base: tuple[str, ...], name: Name) -> tuple[str, ...]:
    # policies are keyed by path-only names; a label would be the last component
    return (*base, *name.path, *((name.label,) if name.label is not None else ()))


def _limits(policy: Policy, usage: Amounts) -> tuple[tuple[str, ...], tuple[str, ...]]:
    limits = Amounts(policy.unikernels, policy.memory, policy.block)
    full: list[str] = []
    over: list[str] = []
    for dim in _DIMENSIONS:
        limit, used = limits.get(dim), usage.get(dim) or 0
        if limit is None:  # no block devices allowed: any is beyond
            if used > 0:
                over.append(dim)
            continue
        if used > limit:
            over.append(dim)
        elif limit > 0 and used >= limit:
            full.append(dim)
    return tuple(full), tuple(over)


def _overcommitted(policy: Policy, children: Sequence[Node]) -> tuple[tuple[str, int, int], ...]:
    given = [c.policy for c in children if c.policy is not None]
    if not given:
        return ()
    sums = Amounts(
        sum(p.unikernels for p in given),
        sum(p.memory for p in given),
        sum(p.block or 0 for p in given),
    )
    own = Amounts(policy.unikernels, policy.memory, policy.block or 0)
    out = []
    for dim in _DIMENSIONS:
        total, limit = sums.get(dim) or 0, own.get(dim) or 0
        if total > limit:
            out.append((dim, total, limit))
    return tuple(out)


def build_tree(
    base: tuple[str, ...],
    policies: Sequence[tuple[Name, Policy]],
    unikernels: Sequence[tuple[Name, UnikernelInfoRecord]],
    blocks: Sequence[BlockDeviceEntry],
    now: dt.datetime,
    expiries: Mapping[tuple[str, ...], Expiry] | None = None,
) -> Node:
    """The tree rooted at *base* from the three replies' (relative) entries."""
    expiries = expiries or {}
    policy_at = {_policy_path(base, n): p for n, p in policies}
    uks = [
        UnikernelAt(
            n.under(base),
            r.memory,
            r.cpuids,
            frozenset(b.bridge for b in r.bridges),
        )
        for n, r in unikernels
    ]
    blks = [BlockAt(b.name.under(base), b.size, b.active) for b in blocks]
    paths = {base, *policy_at}
    paths.update(u.name.path for u in uks)
    paths.update(b.name.path for b in blks)
    for path in list(paths):  # every ancestor down from base, so the tree has no gaps
        paths.update(path[:i] for i in range(len(base), len(path)))
    paths = {p for p in paths if p[: len(base)] == base}

    def node(path: tuple[str, ...]) -> Node:
        children = tuple(
            node(p) for p in sorted(paths) if len(p) == len(path) + 1 and p[: len(path)] == path
        )
        # what counts against a policy: albatross's trie-key rule (``:alice`` is below alice)
        below = [u for u in uks if u.name.is_below(path)]
        below_blocks = [b for b in blks if b.name.is_below(path)]
        usage = Amounts(len(below), sum(u.memory for u in below), sum(b.size for b in below_blocks))
        policy = policy_at.get(path)
        full, over = _limits(policy, usage) if policy is not None else ((), ())
        expiry = expiries.get(path)
        return Node(
            path,
            policy,
            usage,
            tuple(sorted((u for u in uks if u.name.path == path), key=lambda u: str(u.name))),
            tuple(sorted((b for b in blks if b.name.path == path), key=lambda b: str(b.name))),
            children,
            expiry,
            full,
            over,
            _overcommitted(policy, children) if policy is not None else (),
            expiry is not None and expiry.soon(now),
        )

    return node(base)


# -- text --------------------------------------------------------------------


def _amount(value: int | None) -> str:
    if value is None:
        return "none"
    return "unlimited" if value >= MAX_INT else str(value)


def _markers(n: Node) -> list[str]:
    out = []
    if n.over:
        out.append(f"!OVER({','.join(n.over)})")
    if n.full:
        out.append(f"!FULL({','.join(n.full)})")
    if n.overcommitted:
        parts = ",".join(f"{d} {total}>{own}" for d, total, own in n.overcommitted)
        out.append(f"!OVERCOMMITTED({parts})")
    if n.expires_soon:
        out.append("!EXPIRES")
    return out


def _usage_line(n: Node) -> str:
    if n.policy is None:
        used = n.usage
        return (
            f"used {used.unikernels} unikernels, {used.memory} MB memory, "
            f"{used.block} MB block (no policy here)"
        )
    p, u, free = n.policy, n.usage, n.headroom
    assert free is not None
    pieces = []
    limits = Amounts(p.unikernels, p.memory, p.block)
    for dim in _DIMENSIONS:
        pieces.append(f"{u.get(dim) or 0}/{_amount(limits.get(dim))} {_UNITS[dim]}")
    frees = []
    for dim in _DIMENSIONS:
        limit = limits.get(dim)
        if limit is None:
            continue
        frees.append(f"{'unlimited' if limit >= MAX_INT else free.get(dim)} {_UNITS[dim]}")
    return "used " + ", ".join(pieces) + "; free " + ", ".join(frees)


def _lines(n: Node, depth: int, out: list[str]) -> None:
    pad = "  " * depth
    head = str(n.name) + "  " + (str(n.policy) if n.policy is not None else "no policy")
    if n.expiry is not None:
        head += f"  expires {n.expiry.date()}"
    marks = _markers(n)
    if marks:
        head += "  " + "  ".join(marks)
    out.append(pad + head)
    out.append(pad + "  " + _usage_line(n))
    for u in n.unikernels:
        cpus = ",".join(str(c) for c in sorted(u.cpuids))
        line = f"unikernel {u.name}  {u.memory} MB memory, CPUids {cpus}"
        if u.bridges:
            line += ", bridges " + ",".join(sorted(u.bridges))
        out.append(pad + "  " + line)
    for b in n.blocks:
        out.append(pad + f"  block {b.name}  {b.size} MB, {'in use' if b.active else 'unused'}")
    for child in n.children:
        _lines(child, depth + 1, out)


def render_text(root: Node) -> str:
    """The tree as indented text, one node per paragraph (two spaces per level)."""
    out: list[str] = []
    _lines(root, 0, out)
    return "\n".join(out) + "\n"


# -- JSON --------------------------------------------------------------------


def _amounts_json(a: Amounts | None) -> dict[str, int | None] | None:
    if a is None:
        return None
    return {"unikernels": a.unikernels, "memory": a.memory, "block": a.block}


def tree_json(n: Node) -> dict[str, object]:
    """The tree as plain JSON data (the schema the README documents)."""
    p = n.policy
    return {
        "path": str(n.name),
        "policy": None if p is None else to_json(p),
        "usage": _amounts_json(n.usage),
        "headroom": _amounts_json(n.headroom),
        "full": list(n.full),
        "over": list(n.over),
        "overcommitted": [
            {"dimension": d, "children": total, "policy": own} for d, total, own in n.overcommitted
        ],
        "expires": None if n.expiry is None else n.expiry.not_after.isoformat(),
        "expires_soon": n.expires_soon,
        "unikernels": [
            {
                "name": str(u.name),
                "memory": u.memory,
                "cpuids": sorted(u.cpuids),
                "bridges": sorted(u.bridges),
            }
            for u in n.unikernels
        ],
        "blocks": [{"name": str(b.name), "size": b.size, "active": b.active} for b in n.blocks],
        "children": [tree_json(c) for c in n.children],
    }
