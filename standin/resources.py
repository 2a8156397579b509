"""Resource accounting of albatrossd (vmm_resources.ml) as pure code.

Three tries: policies (keyed by path), block devices (name -> size MB and
whether a unikernel uses it) and running unikernels.  Every check raises
:class:`~standin.errors.Refused` with albatross's exact text, in albatross's
order (behaviour.md §3.3-§3.6), including its gaps: the root policy is never
consulted when inserting a policy, and creation only looks at the policy at
the unikernel's own path (§9.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from core.wire import Name, Policy, UnikernelConfig
from standin.errors import PolicyRefused, Refused
from standin.trie import Trie

__all__ = ["BlockState", "Resources", "Unikernel", "block_name"]


@dataclass(frozen=True, slots=True)
class Unikernel:
    """A running unikernel (``Unikernel.t``): its config plus what the host gave it."""

    config: UnikernelConfig
    digest: bytes
    started: datetime
    pid: int
    taps: tuple[tuple[str, bytes], ...] = ()  # (tap device, MAC), one per network


@dataclass(frozen=True, slots=True)
class BlockState:
    size: int  # MB
    active: bool


def block_name(unikernel: Name, device: str) -> Name:
    """``Name.block_name``: a block device lives beside the unikernel, at its path."""
    return Name(unikernel.path, device)


def _ints(values: frozenset[int]) -> str:
    return ", ".join(str(v) for v in sorted(values))


def _texts(values: frozenset[str] | set[str]) -> str:
    return ", ".join(sorted(values))


@dataclass
class Resources:
    """The three tries; mutate in place, :meth:`copy` for a what-if check."""

    policies: Trie[Policy] = field(default_factory=Trie)
    blocks: Trie[BlockState] = field(default_factory=Trie)
    unikernels: Trie[Unikernel] = field(default_factory=Trie)

    def copy(self) -> Resources:
        return Resources(self.policies.copy(), self.blocks.copy(), self.unikernels.copy())

    # -- lookups ------------------------------------------------------------

    def find_unikernel(self, name: Name) -> Unikernel | None:
        return self.unikernels.find(name)

    def find_policy(self, path: tuple[str, ...]) -> Policy | None:
        return self.policies.find(Name(path, None))

    def find_block(self, name: Name) -> BlockState | None:
        return self.blocks.find(name)

    def unikernel_usage(self, path: tuple[str, ...]) -> tuple[int, int]:
        """(count, memory MB) of the unikernels at and below *path*."""
        count = memory = 0
        for u in self.unikernels.values_below(path):
            count += 1
            memory += u.config.memory
        return count, memory

    def block_usage(self, path: tuple[str, ...]) -> int:
        """Total MB of block devices (active and inactive) at and below *path*."""
        return sum(b.size for b in self.blocks.values_below(path))

    def console_limit(self, name: Name) -> int:
        """``Vmm_resources.unikernels``: max_int at the root, else the path's policy count."""
        if not name.path:
            return (1 << 62) - 1
        policy = self.find_policy(name.path)
        return 0 if policy is None else policy.unikernels

    # -- unikernels ---------------------------------------------------------

    def check_unikernel(self, name: Name, config: UnikernelConfig) -> None:
        """``check_unikernel``: policy at the path, then block devices, then the name."""
        policy = self.find_policy(name.path)
        if policy is not None:
            _check_policy(policy, self.unikernel_usage(name.path), config)
        for dev in sorted(config.blocks, key=lambda b: b.name):
            bname = block_name(name, dev.host_device)
            state = self.find_block(bname)
            if state is None:
                raise Refused(f"block device {bname} not found")
            if state.active:
                raise Refused(f"block device {bname} already in use")
        if self.find_unikernel(name) is not None:
            raise Refused("unikernel with same name already exists")

    def insert_unikernel(self, name: Name, unikernel: Unikernel) -> None:
        if self.unikernels.insert(name, unikernel) is not None:
            raise Refused(f"unikernel {name} already exists in trie")
        self._use_blocks(name, unikernel.config, True)

    def remove_unikernel(self, name: Name) -> None:
        unikernel = self.find_unikernel(name)
        if unikernel is None:
            raise Refused("unknown unikernel")
        self._use_blocks(name, unikernel.config, False)
        self.unikernels.remove(name)

    def _use_blocks(self, name: Name, config: UnikernelConfig, active: bool) -> None:
        for dev in config.blocks:
            bname = block_name(name, dev.host_device)
            state = self.find_block(bname)
            if state is None:
                raise Refused(f"block device {bname} not in trie")
            if state.active == active:
                now = "active" if active else "inactive"
                raise Refused(f"block device {bname} already in state {now}")
            self.blocks.insert(bname, BlockState(state.size, active))

    # -- block devices ------------------------------------------------------

    def check_block(self, name: Name, size: int) -> None:
        if self.find_block(name) is not None:
            raise Refused(f"block device with name {name.pretty()} already exists")
        policy = self.find_policy(name.path)
        if policy is None:
            return
        used = self.block_usage(name.path)
        if policy.block is None:
            raise PolicyRefused("no block devices are allowed by policy")
        if size > policy.block - used:
            raise PolicyRefused(
                f"block device policy limit of {policy.block} MB (used {used} MB) "
                f"would be exceeded by the request ({size} MB)"
            )

    def insert_block(self, name: Name, size: int) -> None:
        self.check_block(name, size)
        self.blocks.insert(name, BlockState(size, False))

    def remove_block(self, name: Name) -> None:
        state = self.find_block(name)
        if state is None:
            raise Refused(f"unknown block device {name}")
        if state.active:
            raise Refused(f"block device {name} in use")
        self.blocks.remove(name)

    # -- policies -----------------------------------------------------------

    def insert_policy(self, path: tuple[str, ...], policy: Policy) -> None:
        """``insert_policy``: ancestors (never the root), descendants, current usage."""
        for depth in range(len(path) - 1, 0, -1):
            above = self.find_policy(path[:depth])
            if above is not None:
                _within(policy, above)
        for rel, below in self.policies.fold(path):
            if not rel.is_root:
                _within(below, policy)
        self._check_usage(path, policy)
        self.policies.insert(Name(path, None), policy)

    def _check_usage(self, path: tuple[str, ...], policy: Policy) -> None:
        count, memory = self.unikernel_usage(path)
        block = self.block_usage(path)
        bridges: set[str] = set()
        cpuids: set[int] = set()
        for u in self.unikernels.values_below(path):
            bridges.update(n.host_bridge for n in u.config.bridges)
            cpuids.update(u.config.cpuids)
        limit_block = policy.block or 0
        if not cpuids <= policy.cpuids:
            raise PolicyRefused(
                f"policy does not allow CPUids {_ints(frozenset(cpuids) - policy.cpuids)}"
            )
        if not bridges <= policy.bridges:
            raise PolicyRefused(
                f"policy allows bridges {_texts(policy.bridges)}, "
                f"which is not a superset of {_texts(bridges)}"
            )
        if count > policy.unikernels:
            raise PolicyRefused(
                "unikernel would exceed running unikernel limit set by policy to "
                f"{policy.unikernels}, running {count}"
            )
        if memory > policy.memory:
            raise PolicyRefused(
                "unikernel would exceed running memory limit set by policy to "
                f"{policy.memory} MB, used {memory} MB"
            )
        if block > limit_block:
            raise PolicyRefused(
                "unikernel would exceed running block storage limit set by policy to "
                f"{limit_block} MB, used {block} MB"
            )

    def remove_policy(self, path: tuple[str, ...]) -> None:
        if self.find_policy(path) is None:
            raise Refused("unknown policy")
        self.policies.remove(Name(path, None))


def _within(sub: Policy, parent: Policy) -> None:
    try:
        sub.check_within(parent)
    except Exception as e:  # PolicyError from the core, re-raised as a daemon refusal
        raise PolicyRefused(str(e)) from None


def _check_policy(policy: Policy, used: tuple[int, int], config: UnikernelConfig) -> None:
    """``check_policy``: count, memory, cpuids, bridges - first failure wins."""
    count, memory = used
    if count + 1 > policy.unikernels:
        raise PolicyRefused(f"maximum amount of unikernels ({policy.unikernels}) reached")
    if config.memory > policy.memory - memory:
        raise PolicyRefused(
            f"maximum allowed memory ({policy.memory}, used {memory}) "
            f"would be exceeded (requesting {config.memory})"
        )
    if not config.cpuids <= policy.cpuids:
        raise PolicyRefused(
            f"CPUids {_ints(config.cpuids - policy.cpuids)} are not allowed by policy"
        )
    disallowed = [b for b in _bridges_in_order(config) if b not in policy.bridges]
    if disallowed:
        raise PolicyRefused(f"bridges {', '.join(disallowed)} not allowed by policy")


def _bridges_in_order(config: UnikernelConfig) -> list[str]:
    # albatross keeps the config's list order; our config holds a set, so sort by device name.
    return [n.host_bridge for n in sorted(config.bridges, key=lambda n: n.name)]
