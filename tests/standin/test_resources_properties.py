"""Any sequence of operations keeps albatross's resource invariants (Hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from core.wire import BlockDevice, Name, NetIf, Policy, UnikernelConfig
from standin.errors import Refused
from standin.resources import Resources, Unikernel, block_name

NOW = datetime(2026, 11, 27, tzinfo=UTC)
PATHS = [("a",), ("a", "b"), ("a", "b", "c"), ("d",)]
LABELS = ["x", "y", "z"]

policies = st.builds(
    Policy,
    unikernels=st.integers(0, 3),
    cpuids=st.frozensets(st.integers(0, 2), max_size=3),
    memory=st.integers(0, 100),
    block=st.none() | st.integers(0, 30),
    bridges=st.frozensets(st.sampled_from(["br0", "br1"]), max_size=2),
)
names = st.builds(Name, st.sampled_from(PATHS), st.sampled_from(LABELS))
configs = st.builds(
    UnikernelConfig,
    image=st.just(b""),
    memory=st.integers(1, 60),
    cpuids=st.frozensets(st.integers(0, 2), min_size=1, max_size=2),
    bridges=st.frozensets(
        st.builds(NetIf, st.just("n0"), st.sampled_from(["br0", "br1"])), max_size=1
    ),
    blocks=st.frozensets(st.builds(BlockDevice, st.just("s"), st.sampled_from(LABELS)), max_size=1),
)
operations = st.one_of(
    st.tuples(st.just("policy"), st.sampled_from(PATHS), policies),
    st.tuples(st.just("unpolicy"), st.sampled_from(PATHS)),
    st.tuples(st.just("create"), names, configs),
    st.tuples(st.just("destroy"), names),
    st.tuples(st.just("block"), names, st.integers(1, 20)),
    st.tuples(st.just("unblock"), names),
)


def apply(r: Resources, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "policy":
        r.insert_policy(op[1], op[2])
    elif kind == "unpolicy":
        r.remove_policy(op[1])
    elif kind == "create":
        r.check_unikernel(op[1], op[2])
        r.insert_unikernel(op[1], Unikernel(op[2], b"", NOW, 1))
    elif kind == "destroy":
        r.remove_unikernel(op[1])
    elif kind == "block":
        r.insert_block(op[1], op[2])
    else:
        r.remove_block(op[1])


def snapshot(r: Resources) -> tuple[object, ...]:
    return (r.policies.all(), r.blocks.all(), r.unikernels.all())


def check_invariants(r: Resources) -> None:
    # every policy fits in every (non-root) ancestor's policy
    for name, policy in r.policies.all():
        for depth in range(1, len(name.path)):
            above = r.find_policy(name.path[:depth])
            if above is not None:
                assert policy.is_within(above), (name, policy, above)
    # a block device is active exactly when one running unikernel uses it
    users: dict[Name, int] = {}
    for name, u in r.unikernels.all():
        for dev in u.config.blocks:
            key = block_name(name, dev.host_device)
            users[key] = users.get(key, 0) + 1
    for name, state in r.blocks.all():
        assert state.active == (users.get(name, 0) == 1), name
    assert all(count == 1 for count in users.values())
    assert all(r.find_block(n) is not None for n in users)


@settings(max_examples=300, deadline=None)
@given(st.lists(operations, max_size=30))
def test_operations_keep_the_invariants_and_refusals_change_nothing(
    ops: list[tuple[Any, ...]],
) -> None:
    r = Resources()
    r.insert_policy((), Policy(100, frozenset({0, 1, 2}), 1000, 1000, frozenset({"br0", "br1"})))
    for op in ops:
        before = snapshot(r)
        try:
            apply(r, op)
        except Refused:
            assert snapshot(r) == before, op
        check_invariants(r)
