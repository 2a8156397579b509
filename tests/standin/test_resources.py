"""The policy and resource rules of albatrossd (behaviour.md §3.3-§3.6), synchronously.

Every rule has a case that passes and a case that must be refused, with
albatross's exact text.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.wire import BlockDevice, Name, NetIf, Policy, UnikernelConfig
from standin.errors import PolicyRefused, Refused
from standin.resources import Resources, Unikernel

NOW = datetime(2026, 11, 27, tzinfo=UTC)


def pol(
    unikernels: int = 2,
    cpuids: set[int] | None = None,
    memory: int = 64,
    block: int | None = 100,
    bridges: set[str] | None = None,
) -> Policy:
    return Policy(
        unikernels,
        frozenset({0} if cpuids is None else cpuids),
        memory,
        block,
        frozenset({"service"} if bridges is None else bridges),
    )


def cfg(
    memory: int = 16,
    cpuids: set[int] | None = None,
    nets: tuple[tuple[str, str | None], ...] = (),
    blocks: tuple[tuple[str, str | None], ...] = (),
) -> UnikernelConfig:
    return UnikernelConfig(
        image=b"",
        memory=memory,
        cpuids=frozenset({0} if cpuids is None else cpuids),
        bridges=frozenset(NetIf(n, b) for n, b in nets),
        blocks=frozenset(BlockDevice(n, d) for n, d in blocks),
    )


def name(text: str) -> Name:
    return Name.parse(text)


def run(r: Resources, text: str, config: UnikernelConfig) -> None:
    """Check and insert a running unikernel, as a successful create does."""
    r.check_unikernel(name(text), config)
    r.insert_unikernel(name(text), Unikernel(config, b"d" * 32, NOW, 1))


def resources_with_alice(policy: Policy | None = None) -> Resources:
    r = Resources()
    r.insert_policy((), pol(unikernels=1 << 40, cpuids={0, 1}, memory=4096, block=10000))
    r.insert_policy(("alice",), policy or pol())
    return r


# -- §3.3 / §3.4 step 1: a policy must fit under every ancestor's (except the root's) ------

SMALLER_REFUSALS = [
    (pol(unikernels=3), "policy above allows 2 unikernels, which is fewer than 3"),
    (pol(memory=65), "policy above allows 64 MB memory, which is fewer than 65 MB"),
    (pol(cpuids={0, 1}), "policy above does not allow CPUids 1"),
    (
        pol(bridges={"service", "other"}),
        "policy above allows bridge(s) service, which is not a superset of other, service",
    ),
    (pol(block=101), "policy above allows 100 MB block storage, which is fewer than 101 MB"),
]


@pytest.mark.parametrize(("sub", "text"), SMALLER_REFUSALS)
def test_sub_policy_larger_than_parent_is_refused(sub: Policy, text: str) -> None:
    r = resources_with_alice()
    with pytest.raises(PolicyRefused) as e:
        r.insert_policy(("alice", "bob"), sub)
    assert e.value.message == text
    assert r.find_policy(("alice", "bob")) is None


def test_sub_policy_equal_to_parent_is_accepted() -> None:
    r = resources_with_alice()
    r.insert_policy(("alice", "bob"), pol())
    assert r.find_policy(("alice", "bob")) == pol()


def test_block_none_above_refuses_any_block_below() -> None:
    r = resources_with_alice(pol(block=None))
    with pytest.raises(PolicyRefused, match="allows 0 MB block storage, which is fewer than 1 MB"):
        r.insert_policy(("alice", "bob"), pol(block=1))
    r.insert_policy(("alice", "bob"), pol(block=None))  # None under None is fine


def test_grandparent_is_checked_too() -> None:
    r = resources_with_alice(pol(unikernels=2))
    r.insert_policy(("alice", "bob"), pol(unikernels=2))
    with pytest.raises(PolicyRefused, match="policy above allows 2 unikernels, which is fewer"):
        r.insert_policy(("alice", "bob", "carol"), pol(unikernels=5))


def test_root_policy_is_never_consulted() -> None:
    # behaviour.md §3.4 / §9.2: a top-level policy may exceed the machine.
    r = resources_with_alice()
    r.insert_policy(("big",), pol(unikernels=1 << 50, cpuids={7}, memory=1 << 30, block=1 << 30))
    assert r.find_policy(("big",)) is not None


def test_replacing_a_policy_with_a_larger_one_is_allowed() -> None:
    r = resources_with_alice(pol(unikernels=2))
    r.insert_policy(("alice",), pol(unikernels=20))
    assert r.find_policy(("alice",)) == pol(unikernels=20)


# -- §3.4 step 2: every descendant must fit under the new policy -------------------------


def test_new_policy_smaller_than_a_descendant_is_refused() -> None:
    r = resources_with_alice(pol(unikernels=10))
    r.insert_policy(("alice", "bob", "carol"), pol(unikernels=5))
    with pytest.raises(
        PolicyRefused, match="policy above allows 3 unikernels, which is fewer than 5"
    ):
        r.insert_policy(("alice",), pol(unikernels=3))
    r.insert_policy(("alice",), pol(unikernels=5))


# -- §3.4 step 3: the new policy must cover what runs below it ------------------------------

USAGE_REFUSALS = [
    (pol(cpuids={1}), "policy does not allow CPUids 0"),
    (pol(bridges=set()), "policy allows bridges , which is not a superset of service"),
    (
        pol(unikernels=1),
        "unikernel would exceed running unikernel limit set by policy to 1, running 2",
    ),
    (
        pol(memory=31),
        "unikernel would exceed running memory limit set by policy to 31 MB, used 32 MB",
    ),
    (
        pol(block=9),
        "unikernel would exceed running block storage limit set by policy to 9 MB, used 10 MB",
    ),
    (
        pol(block=None),
        "unikernel would exceed running block storage limit set by policy to 0 MB, used 10 MB",
    ),
]


def busy_alice() -> Resources:
    r = resources_with_alice()
    run(r, "alice:a1", cfg(nets=(("service0", "service"),)))
    run(r, "alice:a2", cfg())
    r.insert_block(name("alice:disk"), 10)
    return r


@pytest.mark.parametrize(("new", "text"), USAGE_REFUSALS)
def test_policy_below_current_usage_is_refused(new: Policy, text: str) -> None:
    r = busy_alice()
    with pytest.raises(PolicyRefused) as e:
        r.insert_policy(("alice",), new)
    assert e.value.message == text
    assert r.find_policy(("alice",)) == pol()  # nothing changed, nothing killed


def test_policy_covering_current_usage_is_accepted() -> None:
    r = busy_alice()
    r.insert_policy(("alice",), pol(unikernels=2, memory=32, block=10))


# -- §3.5 removal ---------------------------------------------------------------------------


def test_remove_policy() -> None:
    r = busy_alice()
    with pytest.raises(Refused, match=r"^unknown policy$"):
        r.remove_policy(("nobody",))
    r.remove_policy(("alice",))  # no checks on usage
    assert r.find_policy(("alice",)) is None
    run(r, "alice:a3", cfg(memory=4000))  # no policy: unlimited


# -- §3.6 create checks ---------------------------------------------------------------------

CREATE_REFUSALS = [
    ("alice:a3", cfg(), "maximum amount of unikernels (2) reached"),
    (
        "alice:a2",
        cfg(memory=49),
        "maximum allowed memory (64, used 16) would be exceeded (requesting 49)",
    ),
    ("alice:a2", cfg(cpuids={0, 1, 3}), "CPUids 1, 3 are not allowed by policy"),
    (
        "alice:a2",
        cfg(nets=(("n0", "nosuch"), ("n1", None))),
        "bridges nosuch, n1 not allowed by policy",
    ),
    ("alice:a2", cfg(blocks=(("storage", "ghost"),)), "block device alice:ghost not found"),
    ("alice:a1", cfg(memory=16), "unikernel with same name already exists"),
]


@pytest.mark.parametrize(("who", "config", "text"), CREATE_REFUSALS)
def test_create_refusals(who: str, config: UnikernelConfig, text: str) -> None:
    r = resources_with_alice()
    run(r, "alice:a1", cfg(memory=16))
    if who == "alice:a3":
        run(r, "alice:a2", cfg(memory=16))
    with pytest.raises(Refused) as e:
        r.check_unikernel(name(who), config)
    assert e.value.message == text


def test_create_within_policy_is_accepted() -> None:
    r = resources_with_alice()
    run(r, "alice:a1", cfg(memory=16))
    run(r, "alice:a2", cfg(memory=48, nets=(("service", None),)))
    assert r.unikernel_usage(("alice",)) == (2, 64)


def test_error_order_policy_then_blocks_then_name() -> None:
    r = resources_with_alice(pol(unikernels=1))
    run(r, "alice:a1", cfg())
    with pytest.raises(Refused, match="maximum amount"):
        r.check_unikernel(name("alice:a1"), cfg(blocks=(("b", None),)))
    r.remove_policy(("alice",))
    with pytest.raises(Refused, match="block device alice:b not found"):
        r.check_unikernel(name("alice:a1"), cfg(blocks=(("b", None),)))


def test_ancestors_are_not_checked_at_create() -> None:
    # behaviour.md §3.6 / §9.2: alice (2) delegates b1 (2) and b2 (2); alice's subtree runs 4.
    r = resources_with_alice(pol(unikernels=2))
    r.insert_policy(("alice", "b1"), pol(unikernels=2))
    r.insert_policy(("alice", "b2"), pol(unikernels=2))
    for who in ("alice:b1:x", "alice:b1:y", "alice:b2:x", "alice:b2:y"):
        run(r, who, cfg())
    assert r.unikernel_usage(("alice",)) == (4, 64)


def test_block_in_use_and_release() -> None:
    r = resources_with_alice()
    r.insert_block(name("alice:disk"), 10)
    run(r, "alice:a1", cfg(blocks=(("storage", "disk"),)))
    assert r.find_block(name("alice:disk")).active  # type: ignore[union-attr]
    with pytest.raises(Refused, match=r"^block device alice:disk already in use$"):
        r.check_unikernel(name("alice:a2"), cfg(blocks=(("storage", "disk"),)))
    with pytest.raises(Refused, match="in use"):
        r.remove_block(name("alice:disk"))
    r.remove_unikernel(name("alice:a1"))
    assert not r.find_block(name("alice:disk")).active  # type: ignore[union-attr]


# -- §3.6 block add -------------------------------------------------------------------------


def test_block_add_rules() -> None:
    r = resources_with_alice()
    r.insert_block(name("alice:d1"), 60)
    with pytest.raises(
        Refused, match=r"^block device with name \[unikernel: alice:d1\] already exists$"
    ):
        r.check_block(name("alice:d1"), 1)
    with pytest.raises(
        PolicyRefused,
        match=r"^block device policy limit of 100 MB \(used 60 MB\) would be exceeded "
        r"by the request \(41 MB\)$",
    ):
        r.check_block(name("alice:d2"), 41)
    r.insert_block(name("alice:d2"), 40)
    r.insert_block(name("nopolicy:d"), 1 << 40)  # no policy at the path: unlimited


def test_block_add_without_block_policy_is_refused() -> None:
    r = resources_with_alice(pol(block=None))
    with pytest.raises(PolicyRefused, match=r"^no block devices are allowed by policy$"):
        r.check_block(name("alice:d1"), 1)


def test_inactive_blocks_count_against_the_limit() -> None:
    r = resources_with_alice()
    r.insert_block(name("alice:d1"), 50)
    run(r, "alice:a1", cfg(blocks=(("s", "d1"),)))
    r.insert_block(name("alice:d2"), 50)
    with pytest.raises(PolicyRefused, match=r"used 100 MB"):
        r.check_block(name("alice:d3"), 1)


def test_console_limit_is_the_path_policy_count() -> None:
    r = resources_with_alice(pol(unikernels=3))
    assert r.console_limit(name(":x")) == (1 << 62) - 1
    assert r.console_limit(name("alice:x")) == 3
    assert r.console_limit(name("nobody:x")) == 0
