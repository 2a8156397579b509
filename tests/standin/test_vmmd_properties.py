"""Any sequence of well-formed requests gives an outcome, never an exception (Hypothesis)."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.wire import (
    BlockAdd,
    BlockAddOld,
    BlockDevice,
    BlockDump,
    BlockDumpOld,
    BlockInfo,
    BlockRemove,
    BlockSet,
    BlockSetOld,
    ConsoleAdd,
    Header,
    Name,
    NetIf,
    Policy,
    PolicyAdd,
    PolicyInfo,
    PolicyRemove,
    Quit,
    Restart,
    StatsInitial,
    UnikernelArguments,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelGet,
    UnikernelInfo,
    UnikernelRestart,
)
from standin.errors import Refused
from standin.outcomes import Create, Reply, Wait, WaitAndCreate
from standin.resources import Unikernel
from standin.vmmd import Vmmd
from tests.standin.helpers import make_image

NOW = datetime(2026, 11, 27, tzinfo=UTC)
TICKER: bytes = b""


@pytest.fixture(scope="module", autouse=True)
def _ticker(tmp_path_factory: pytest.TempPathFactory) -> None:
    global TICKER
    TICKER = make_image(tmp_path_factory.mktemp("img"), "ticker")


names = st.builds(
    Name,
    st.sampled_from([(), ("a",), ("a", "b")]),
    st.none() | st.sampled_from(["x", "y", "a"]),
)
policies = st.builds(
    Policy,
    st.integers(-1, 3),
    st.frozensets(st.integers(0, 2), max_size=3),
    st.integers(-5, 200),
    st.none() | st.integers(-1, 50),
    st.frozensets(st.sampled_from(["service", "x"]), max_size=2),
)
images = st.sampled_from(["ticker", "zticker", "garbage", "zgarbage", "empty"])
fail = st.sampled_from([Quit(), Restart(), Restart(frozenset({0, 3}))])
nets = st.frozensets(
    st.builds(NetIf, st.sampled_from(["n0", "service0"]), st.none() | st.just("service")),
    max_size=1,
)
blocks = st.frozensets(
    st.builds(BlockDevice, st.sampled_from(["s"]), st.none() | st.just("x")), max_size=1
)


def image(kind: str) -> tuple[bytes, bool]:
    raw = {"ticker": TICKER, "zticker": TICKER, "garbage": b"\x7fELF junk", "zgarbage": b"junk"}
    data = raw.get(kind.lstrip("z"), b"")
    if kind.startswith("z"):
        return (zlib.compress(data) if kind == "zticker" else data), True
    return data, False


configs = st.builds(
    lambda kind, mem, cpus, f, n, b: UnikernelConfig(
        image(kind)[0], mem, cpus, image(kind)[1], fail_behaviour=f, bridges=n, blocks=b
    ),
    images,
    st.integers(-1, 80),
    st.frozensets(st.integers(0, 2), max_size=2),
    fail,
    nets,
    blocks,
)
commands = st.one_of(
    st.builds(PolicyAdd, policies),
    st.just(PolicyRemove()),
    st.just(PolicyInfo()),
    st.just(UnikernelInfo()),
    st.builds(UnikernelGet, st.integers(-2, 12)),
    st.builds(UnikernelCreate, configs, st.booleans()),
    st.just(UnikernelDestroy()),
    st.builds(
        UnikernelRestart,
        st.none() | st.builds(UnikernelArguments, st.integers(-1, 80), blocks=blocks, bridges=nets),
    ),
    st.just(BlockInfo()),
    st.builds(BlockAdd, st.integers(-2, 60)),
    st.just(BlockRemove()),
    st.builds(BlockSet, st.booleans()),
    st.builds(BlockDump, st.integers(-1, 10)),
    st.builds(BlockAddOld, st.integers(-1, 3), st.booleans(), st.none() | st.binary(max_size=20)),
    st.builds(BlockSetOld, st.booleans(), st.binary(max_size=20)),
    st.builds(BlockDumpOld, st.integers(0, 9)),
    st.just(StatsInitial()),
    st.builds(ConsoleAdd, st.integers(0, 3)),
)


def carry_out(v: Vmmd[Any], outcome: Any) -> None:
    """What the shell would do, with instant processes."""
    if isinstance(outcome, Create | WaitAndCreate):
        if isinstance(outcome, WaitAndCreate):
            v.register(outcome.name, object())
            v.exited(outcome.name)
        try:
            prepared = v.prepare(outcome.name, outcome.config)
            v.insert(outcome.name, Unikernel(outcome.config, prepared.digest, NOW, 1))
        except Refused:
            pass
    elif isinstance(outcome, Wait):
        v.register(outcome.name, object())
        v.exited(outcome.name)
    elif outcome.__class__.__name__ == "AddBlock":
        v.commit_block(outcome.name, outcome.size)
    elif outcome.__class__.__name__ == "RemoveBlock":
        v.forget_block(outcome.name)
    v.dropped.clear()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(names, commands), max_size=25))
def test_any_request_sequence_gives_outcomes(requests: list[tuple[Name, Any]]) -> None:
    v: Vmmd[Any] = Vmmd(host_bridges=frozenset({"service"}))
    v.resources.insert_policy(
        (), Policy(1 << 40, frozenset({0, 1}), 1000, 1000, frozenset({"service"}))
    )
    for name, command in requests:
        outcome = v.handle(Header(name), command)
        if isinstance(outcome, Reply):
            assert outcome.payload is not None
        carry_out(v, outcome)
