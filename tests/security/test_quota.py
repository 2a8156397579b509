"""Quotas cannot be multiplied by sub-delegation, and the host's limits hold (issue 6.1, 6.2).

Every "attack" test also shows that albatross's own check (the policy at the
unikernel's own path, behaviour.md §3.6) would have let the request through, so
the test could not pass on a naive implementation.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from core.authorize import authorize
from core.wire import (
    ROOT,
    BlockAdd,
    BlockDeviceEntry,
    BlockDeviceList,
    BlockInfo,
    Name,
    NetIf,
    Policy,
    PolicyInfo,
    PolicyList,
    Quit,
    UnikernelArguments,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelInfo,
    UnikernelInfoList,
    UnikernelInfoRecord,
    UnikernelRestart,
)
from core.wire.messages import NetInfoRecord, Typ
from tests.security.pki import create, policy, root
from tlsendpoint.security.rules.quota import (
    Demand,
    QuotaError,
    Usage,
    check_delegations,
    check_usage,
    demand_of,
    root_policy_from,
    usage_from_replies,
    usage_queries,
)
from tlsendpoint.security.rules.reservations import Reservations

HOST = policy(unikernels=(1 << 62) - 1, memory=4096, block=1000, cpuids=frozenset({0, 1, 2, 3}))


def record(
    memory: int = 32, cpuids: frozenset[int] = frozenset({0}), bridge: str | None = None
) -> UnikernelInfoRecord:
    bridges = frozenset({NetInfoRecord("net", bridge, b"\0" * 6)}) if bridge else frozenset()
    return UnikernelInfoRecord(Typ.SOLO5, Quit(), cpuids, memory, b"d" * 32, bridges=bridges)


def host_usage(*running: tuple[str, int], blocks: tuple[tuple[str, int], ...] = ()) -> Usage:
    """Usage as the daemon's root info and block info replies describe it."""
    info = UnikernelInfoList(tuple((Name.parse(n), record(m)) for n, m in running))
    devices = BlockDeviceList(tuple(BlockDeviceEntry(Name.parse(n), s, False) for n, s in blocks))
    return usage_from_replies(ROOT, info, devices)


def naive_albatross_check(
    request_policies: Sequence[tuple[Name, Policy]], usage: Usage, demand: Demand
) -> None:
    """What albatrossd does: only the policy at the unikernel's own path (vmm_resources.ml)."""
    check_usage(request_policies[:1], None, usage, demand)


# -- point 1: the multiplication attack -------------------------------------------


def test_sub_delegation_cannot_multiply_unikernel_quota() -> None:
    ca = root()
    alice = ca.delegate("alice", policy(unikernels=1))
    alice.delegate("bob", policy(unikernels=1))
    carol = alice.delegate("carol", policy(unikernels=1))
    usage = host_usage(("alice:bob:b1", 32))  # bob already runs alice's one unikernel
    request = authorize(carol.leaf_chain("c1", create()))
    demand = demand_of(request.name, request.command)
    assert demand is not None
    naive_albatross_check(request.policies, usage, demand)  # albatross lets it through
    with pytest.raises(QuotaError) as caught:
        check_usage(request.policies, HOST, usage, demand)
    error = caught.value
    assert (str(error.hop), error.field) == ("alice:", "unikernels")
    assert (error.limit, error.used, error.requested) == (1, 1, 1)
    assert error.message == (
        "maximum amount of unikernels (1) reached in the whole subtree of delegation alice: "
        "(certificate CN alice), field unikernels (limit 1, used 1, requested 1)"
    )


def test_legitimate_create_in_sibling_still_works() -> None:
    ca = root()
    alice = ca.delegate("alice", policy(unikernels=2))
    carol = alice.delegate("carol", policy(unikernels=1))
    alice.delegate("bob", policy(unikernels=1))
    request = authorize(carol.leaf_chain("c1", create()))
    usage = host_usage(("alice:bob:b1", 32), (":other", 64))
    demand = demand_of(request.name, request.command)
    assert demand is not None
    check_usage(request.policies, HOST, usage, demand)  # 1 + 1 <= 2


def test_memory_is_summed_over_the_whole_subtree_with_numbers() -> None:
    ca = root()
    alice = ca.delegate("alice", policy(memory=100))
    bob = alice.delegate("bob", policy(memory=100))
    alice.delegate("carol", policy(memory=100))
    usage = host_usage(("alice:carol:c1", 60), ("alice:bob:b1", 20))
    request = authorize(bob.leaf_chain("b2", create(memory=32)))
    demand = demand_of(request.name, request.command)
    assert demand is not None
    naive_albatross_check(request.policies, usage, demand)
    with pytest.raises(QuotaError) as caught:
        check_usage(request.policies, HOST, usage, demand)
    assert (str(caught.value.hop), caught.value.field) == ("alice:", "memory")
    assert (caught.value.limit, caught.value.used, caught.value.requested) == (100, 80, 32)
    assert "(limit 100, used 80, requested 32)" in caught.value.message


def test_block_add_is_summed_over_every_ancestor() -> None:
    ca = root()
    alice = ca.delegate("alice", policy(block=100))
    bob = alice.delegate("bob", policy(block=100))
    usage = host_usage(blocks=(("alice:carol:disk", 50),))
    request = authorize(bob.leaf_chain("disk", BlockAdd(60)))
    demand = demand_of(request.name, request.command)
    assert demand == Demand(block=60)
    naive_albatross_check(request.policies, usage, demand)
    with pytest.raises(QuotaError) as caught:
        check_usage(request.policies, HOST, usage, demand)
    assert (str(caught.value.hop), caught.value.field, caught.value.used) == ("alice:", "block", 50)
    check_usage(request.policies, HOST, usage, Demand(block=50))  # exactly fits


def test_deepest_full_hop_is_named_first() -> None:
    ca = root()
    bob = ca.delegate("alice", policy(unikernels=1)).delegate("bob", policy(unikernels=1))
    request = authorize(bob.leaf_chain("b2", create()))
    with pytest.raises(QuotaError) as caught:
        check_usage(request.policies, HOST, host_usage(("alice:bob:b1", 32)), Demand(1, 32))
    assert str(caught.value.hop) == "alice:bob:"


def test_path_only_names_count_against_the_delegate() -> None:
    # A unikernel created through a "." leaf lands on alice's own trie key (§9.3); it must
    # still use alice's quota, so it cannot be used to escape it.
    alice = root().delegate("alice", policy(unikernels=1))
    request = authorize(alice.leaf_chain("a1", create()))
    with pytest.raises(QuotaError, match="unikernels"):
        check_usage(request.policies, HOST, host_usage((":alice", 32)), Demand(1, 32))


def test_force_create_does_not_count_the_unikernel_it_replaces() -> None:
    alice = root().delegate("alice", policy(unikernels=1, memory=64))
    request = authorize(alice.leaf_chain("a1", create(memory=64, force=True)))
    demand = demand_of(request.name, request.command)
    assert demand is not None and demand.replaces == Name.parse("alice:a1")
    check_usage(request.policies, HOST, host_usage(("alice:a1", 64)), demand)
    with pytest.raises(QuotaError, match="unikernels"):  # a different name is not replaced
        check_usage(request.policies, HOST, host_usage(("alice:a2", 64)), demand)


# -- point 2: the host's own limits ----------------------------------------------------


def test_a_top_level_delegation_larger_than_the_host_is_allowed() -> None:
    # albatross never compares a top-level delegation with the root policy
    # (vmm_resources.ml check_policies_above stops at the root): more memory, a CPU id
    # and a bridge the host lacks are fine on paper; only what a request uses is checked.
    big = root().delegate(
        "alice", policy(memory=100_000, cpuids=frozenset({0, 9}), bridges=frozenset({"br9"}))
    )
    request = authorize(big.leaf_chain("a1", create(memory=64)))
    check_delegations(request.policies)
    demand = demand_of(request.name, request.command)
    assert demand is not None
    check_usage(request.policies, HOST, Usage(), demand)
    with pytest.raises(QuotaError) as caught:  # more than the host has: its numbers
        check_usage(request.policies, HOST, host_usage((":other", 4050)), demand)
    assert (caught.value.hop, caught.value.field) == (ROOT, "memory")
    assert (caught.value.limit, caught.value.used, caught.value.requested) == (4096, 4050, 64)


def test_a_cpu_id_or_bridge_the_host_lacks_is_refused_saying_so() -> None:
    alice = root().delegate(
        "alice", policy(unikernels=1, cpuids=frozenset({0, 8, 9}), bridges=frozenset({"a", "b"}))
    )
    policies = authorize(alice.leaf_chain("a1", create())).policies
    bare = policy(cpuids=frozenset({0, 1}), bridges=frozenset())  # a host without bridges
    check_usage(policies, bare, Usage(), Demand(1, 32, frozenset({0})))  # no network: fine
    with pytest.raises(QuotaError) as caught:
        check_usage(policies, bare, Usage(), Demand(1, 32, bridges=frozenset({"a"})))
    assert caught.value.message == (
        "bridges a not allowed by policy: bridge a is not present on this host (the host's"
        " bridges: none; albatrossd finds the bridges when it starts)"
    )
    assert (caught.value.hop, caught.value.field) == (ROOT, "bridges")
    assert (caught.value.limit, caught.value.requested) == ([], ["a"])
    with pytest.raises(QuotaError) as caught:
        check_usage(policies, bare, Usage(), Demand(1, 32, bridges=frozenset({"a", "b"})))
    assert "bridges a, b are not present on this host" in caught.value.message
    with pytest.raises(QuotaError) as caught:
        check_usage(policies, bare, Usage(), Demand(1, 32, frozenset({0, 9})))
    assert caught.value.message == (
        "CPUids 9 are not allowed by policy: CPU id 9 is not present on this host (the host's"
        " CPU ids: 0, 1)"
    )
    assert (caught.value.hop, caught.value.field) == (ROOT, "cpuids")
    assert (caught.value.limit, caught.value.requested) == ([0, 1], [0, 9])
    with pytest.raises(QuotaError, match="CPU ids 8, 9 are not present on this host"):
        check_usage(policies, bare, Usage(), Demand(1, 32, frozenset({8, 9})))
    # what can never work is named before a quota that is merely full now
    with pytest.raises(QuotaError, match="not present on this host"):
        check_usage(policies, bare, host_usage(("alice:a0", 32)), Demand(1, 32, frozenset({9})))
    with pytest.raises(QuotaError, match="maximum amount of unikernels"):
        check_usage(policies, bare, host_usage(("alice:a0", 32)), Demand(1, 32, frozenset({0})))
    check_usage(policies, None, Usage(), Demand(1, 32, frozenset({9})))  # host unknown


def test_sub_delegation_larger_than_its_issuer_is_named() -> None:
    # authorize() refuses such chains itself now; the pure check still names hop and field
    policies = [
        (Name.parse("alice:bob:"), policy(unikernels=5)),
        (Name.parse("alice:"), policy(unikernels=2)),
    ]
    with pytest.raises(QuotaError) as caught:
        check_delegations(policies)
    assert (str(caught.value.hop), caught.value.field) == ("alice:bob:", "unikernels")
    assert (caught.value.limit, caught.value.requested) == (2, 5)
    assert caught.value.message.endswith(
        "is not within the policy of delegation alice: (certificate CN alice)"
    )


def test_top_level_delegations_together_never_exceed_the_host() -> None:
    ca = root()
    alice = ca.delegate("alice", policy(memory=3000, cpuids=HOST.cpuids))
    ca.delegate("bob", policy(memory=3000, cpuids=HOST.cpuids))
    request = authorize(alice.leaf_chain("a1", create(memory=1500)))
    usage = host_usage(("bob:b1", 3000))
    demand = demand_of(request.name, request.command)
    assert demand is not None
    naive_albatross_check(request.policies, usage, demand)
    with pytest.raises(QuotaError) as caught:
        check_usage(request.policies, HOST, usage, demand)
    assert (caught.value.hop, caught.value.field) == (ROOT, "memory")
    assert caught.value.message == (
        "maximum allowed memory (4096, used 3000) would be exceeded (requesting 1500) in the "
        "whole subtree of host (root policy), field memory (limit 4096, used 3000, requested 1500)"
    )


def test_cpuids_and_bridges_outside_an_ancestor_are_refused() -> None:
    host = policy(cpuids=frozenset(range(8)), bridges=frozenset({"service", "other"}))
    alice = root().delegate("alice", policy(bridges=frozenset({"service"})))
    config = UnikernelConfig(image=b"", bridges=frozenset({NetIf("service", "other")}))
    request = authorize(alice.leaf_chain("a1", UnikernelCreate(config)))
    demand = demand_of(request.name, request.command)
    assert demand is not None and demand.bridges == {"other"}
    naive_albatross_check(request.policies, Usage(), Demand(1, 32))
    with pytest.raises(QuotaError) as caught:
        check_usage(request.policies, host, Usage(), demand)
    assert (str(caught.value.hop), caught.value.field) == ("alice:", "bridges")
    assert caught.value.message.startswith(
        "bridges other not allowed by policy in the whole subtree of delegation alice:"
    )
    with pytest.raises(QuotaError, match=r"^CPUids 7 are not allowed by policy in the whole"):
        check_usage(request.policies, host, Usage(), Demand(1, 32, frozenset({7})))


# -- reading the daemon's replies -----------------------------------------------------


def test_usage_from_replies_makes_relative_names_absolute() -> None:
    at = Name.parse("alice:")
    info = UnikernelInfoList(((Name.parse(":a1"), record(40, bridge="service")),))
    blocks = BlockDeviceList((BlockDeviceEntry(Name.parse("bob:disk"), 10, True),))
    usage = usage_from_replies(at, info, blocks)
    assert set(usage.unikernels) == {Name.parse("alice:a1")}
    totals = usage.totals(at)
    assert (totals.unikernels, totals.memory, totals.block) == (1, 40, 10)
    assert totals.bridges == {"service"}
    assert usage.totals(Name.parse("alice:bob:")).memory == 0


def test_queries_and_root_policy() -> None:
    assert usage_queries() == [(ROOT, PolicyInfo()), (ROOT, UnikernelInfo()), (ROOT, BlockInfo())]
    reply = PolicyList(((Name.parse("alice:"), policy()), (ROOT, HOST)))
    assert root_policy_from(reply) == HOST
    assert root_policy_from(PolicyList(())) is None


def test_demand_table() -> None:
    name = Name.parse("alice:a1")
    args = UnikernelArguments(memory=64, cpuids=frozenset({1}))
    assert demand_of(name, UnikernelRestart(None)) is None
    assert demand_of(name, UnikernelRestart(args)) == Demand(1, 64, frozenset({1}), replaces=name)
    assert demand_of(name, UnikernelDestroy()) is None
    assert demand_of(name, UnikernelInfo()) is None


# -- concurrency ----------------------------------------------------------------------


def test_concurrent_creates_checked_against_one_snapshot_cannot_both_pass() -> None:
    alice = root().delegate("alice", policy(unikernels=1))
    policies = authorize(alice.leaf_chain("a1", create())).policies
    book = Reservations()
    first, second = book.snapshot(), book.snapshot()  # both ask the daemon: usage is empty
    granted = book.reserve(first, policies, HOST, Usage(), Name.parse("alice:a1"), Demand(1, 32))
    check_usage(policies, HOST, Usage(), Demand(1, 32))  # the naive check would pass again
    with pytest.raises(QuotaError, match="unikernels"):
        book.reserve(second, policies, HOST, Usage(), Name.parse("alice:a2"), Demand(1, 32))
    book.release(granted)  # daemon replied; second's snapshot predates that: still counted
    with pytest.raises(QuotaError):
        book.reserve(second, policies, HOST, Usage(), Name.parse("alice:a2"), Demand(1, 32))
    book.done(first)
    book.done(second)
    assert len(book) == 0
    fresh = book.snapshot()  # a snapshot after the release sees the daemon's state instead
    book.reserve(fresh, policies, HOST, Usage(), Name.parse("alice:a2"), Demand(1, 32))


def test_reservations_elsewhere_do_not_block() -> None:
    ca = root()
    alice = ca.delegate("alice", policy(unikernels=1))
    bob = ca.delegate("bob", policy(unikernels=1))
    book = Reservations()
    snap = book.snapshot()
    a = authorize(alice.leaf_chain("a1", create())).policies
    b = authorize(bob.leaf_chain("b1", create())).policies
    book.reserve(snap, a, HOST, Usage(), Name.parse("alice:a1"), Demand(1, 32))
    book.reserve(snap, b, HOST, Usage(), Name.parse("bob:b1"), Demand(1, 32))
    assert len(book.in_flight(snap)) == 2
