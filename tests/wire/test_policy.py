"""Policies: albatross's text, usability, the sub-policy check and the fit check."""

from __future__ import annotations

import pytest

from core.errors import PolicyError, UsageError
from core.wire import Policy


def pol(
    unikernels: int,
    cpuids: set[int] | frozenset[int],
    memory: int,
    block: int | None = None,
    bridges: set[str] | frozenset[str] = frozenset(),
) -> Policy:
    return Policy(unikernels, frozenset(cpuids), memory, block, frozenset(bridges))


ALICE = pol(2, frozenset({0}), 64, 100, frozenset({"service"}))
ROOT = pol((1 << 62) - 1, frozenset({0, 1}), 24105, 258019)


def test_texts_as_albatross_prints_them() -> None:
    # The same texts as vectors/policy-texts.json and case 051.
    assert ALICE.describe() == "2 unikernels 0 CPUids 64 MB memory 100 MB block, bridges: service"
    assert str(pol(1, {0}, 32)) == "policy: 1 unikernels 0 CPUids 32 MB memory no block"
    assert str(ROOT) == (
        "policy: 4611686018427387903 unikernels 0,1 CPUids 24105 MB memory 258019 MB block"
    )
    assert (
        pol(1, {0}, 32, bridges={"service", "other"}).describe().endswith("bridges: other, service")
    )


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (pol(0, {0}, 32), "Unusable policy with no unikernels"),
        (pol(1, set(), 32), "Unusable policy with no CPUids"),
        (pol(1, {0}, 16), "Unusable policy with memory 16 MB <= 16 MB"),
        (pol(1, {0}, 32, -1), "Unusable policy with block -1 MB < 0 MB"),
    ],
)
def test_unusable(policy: Policy, message: str) -> None:
    with pytest.raises(UsageError) as info:
        policy.check_usable()
    assert str(info.value) == message


def test_usable() -> None:
    ALICE.check_usable()
    pol(1, {0}, 17, 0).check_usable()


@pytest.mark.parametrize(
    ("child", "message"),
    [
        (pol(5, {0}, 64, 100), "policy above allows 2 unikernels, which is fewer than 5"),
        (pol(2, {0}, 65, 100), "policy above allows 64 MB memory, which is fewer than 65 MB"),
        (pol(2, {0, 1, 3}, 64, 100), "policy above does not allow CPUids 1, 3"),
        (
            pol(2, {0}, 64, 100, {"other", "service"}),
            "policy above allows bridge(s) service, which is not a superset of other, service",
        ),
        (
            pol(2, {0}, 64, 101),
            "policy above allows 100 MB block storage, which is fewer than 101 MB",
        ),
        # albatross's order: the unikernel count is reported first.
        (pol(3, {7}, 999, 999), "policy above allows 2 unikernels, which is fewer than 3"),
    ],
)
def test_not_within(child: Policy, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        child.check_within(ALICE)
    assert str(info.value) == message
    assert not child.is_within(ALICE)


def test_block_none_rules() -> None:
    no_block = pol(1, {0}, 32)
    assert no_block.is_within(ALICE)  # no block under a block limit: fine
    with pytest.raises(PolicyError, match="allows 0 MB block storage, which is fewer than 1 MB"):
        pol(1, {0}, 32, 1).check_within(no_block)
    assert pol(1, {0}, 32).is_within(no_block)


def test_within() -> None:
    assert pol(1, {0}, 32, 10, {"service"}).is_within(ALICE)
    assert ALICE.is_within(ALICE)


@pytest.mark.parametrize(
    ("cpuids", "memory", "bridges", "message"),
    [
        ({1}, 16, [], "the CPUids 1 requested by the unikernel are not allowed by policy"),
        ({0}, 128, [], "128 MB memory assigned to unikernel exceeds policy (64MB)"),
        ({0}, 16, ["other"], "Bridge(s) other not allowed by policy (available: service)"),
    ],
)
def test_does_not_fit(cpuids: set[int], memory: int, bridges: list[str], message: str) -> None:
    # The client-side texts of cases 057-059.
    with pytest.raises(PolicyError) as info:
        ALICE.check_fits(frozenset(cpuids), memory, bridges)
    assert str(info.value) == message


def test_fits() -> None:
    ALICE.check_fits(frozenset({0}), 64, ["service"])
