"""The small pure pieces: the trie's orders, the state file, the stats book."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from standin.stats import StatsBook, Watched, sample
from standin.store import decode_state, encode_state
from standin.trie import Trie
from tlsendpoint.errors import ParseError
from tlsendpoint.wire import (
    Name,
    NetIf,
    Policy,
    Restart,
    UnikernelConfig,
)
from tlsendpoint.wire.grammar import UNIKERNEL_CONFIG_V4

T0 = datetime(2026, 11, 27, tzinfo=UTC)


def n(text: str) -> Name:
    return Name.parse(text)


def test_trie_orders_like_vmm_trie() -> None:
    t: Trie[int] = Trie()
    for i, text in enumerate([":", "a:", "a:x", "a:b:", "a:b:y", "c:z", ":r"]):
        t.insert(n(text), i)
    assert [str(k) for k, _ in t.all()] == [":", "a:", "a:b:", "a:b:y", "a:x", "c:z", ":r"]
    # fold: post-order, children ascending, names relative to the start
    assert [str(k) for k, _ in t.fold(("a",))] == ["b:y", "b:", ":x", ":"]
    assert [str(k) for k, _ in t.fold_consed(("a",))] == [":", ":x", "b:", "b:y"]
    assert [str(k) for k, _ in t.collect(n("a:b:y"))] == ["a:b:y", "a:b:", "a:", ":"]


def test_trie_key_collision_between_path_and_name() -> None:
    # behaviour.md §1.1: `alice:` and `:alice` are the same node
    t: Trie[str] = Trie()
    t.insert(n("alice:"), "policy")
    assert t.insert(n(":alice"), "unikernel") == "policy"
    assert t.find(n("alice:")) == "unikernel"
    assert [str(k) for k, _ in t.all()] == [":alice"]


def test_state_round_trip() -> None:
    policies = [
        (Name(), Policy(9, frozenset({0}), 100, None)),
        (n("a:"), Policy(1, frozenset(), 1)),
    ]
    config = UnikernelConfig(
        b"img",
        memory=20,
        fail_behaviour=Restart(frozenset({3})),
        argv=("x",),
        bridges=frozenset({NetIf("n0", "br0", b"\x00\x80\x41\x01\x02\x03")}),
    )
    data = encode_state(policies, [(n("a:u"), config)])
    assert decode_state(data) == (policies, [(n("a:u"), config)])
    assert decode_state(encode_state([], [])) == ([], [])
    assert data.startswith(b"\xa6")


def test_empty_state_is_albatrossds_bytes() -> None:
    # [6] { SEQUENCE { unikernels SEQUENCE OF {}, policies SEQUENCE OF {} } }
    assert encode_state([], []) == bytes.fromhex("a606300430003000")


def test_older_layout_with_v4_configs_is_read() -> None:
    config = UnikernelConfig(b"img", memory=20)
    current = encode_state([], [(n(":u"), config)])
    v4_config = UNIKERNEL_CONFIG_V4.encode(config)
    entry = b"\x30" + bytes([len(v4_config) + 4]) + b"\x0c\x02:u" + v4_config
    inner = b"\x30" + bytes([len(entry)]) + entry + b"\x30\x00"
    old = b"\xa5" + bytes([len(inner) + 2]) + b"\x30" + bytes([len(inner)]) + inner
    assert old != current
    assert decode_state(old) == ([], [(n(":u"), config)])


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"", "empty"),
        (bytes.fromhex("a0023000"), r"\[0\] \(unikernels without policies"),
        (bytes.fromhex("a7020500"), "not yet implemented"),
        (bytes.fromhex("a606300430003000") + b"\x00", "trailing"),
        (bytes.fromhex("a6063004300030"), "exceeds the 5 octets available"),
        (
            encode_state(
                [(n("a:"), Policy(1, frozenset(), 1)), (n("a:"), Policy(2, frozenset(), 1))], []
            ),
            "a policy name appears twice",
        ),
    ],
)
def test_bad_state_files(data: bytes, text: str) -> None:
    with pytest.raises(ParseError, match=text):
        decode_state(data)


@given(st.binary(max_size=200))
def test_garbage_state_raises_only_parse_errors(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        decode_state(data)


def watched(memory: int = 32) -> Watched:
    return Watched("vmm", 7, (("service0", "vmmtap0"),), memory, T0)


def test_stats_relative_names_collision_and_replacement() -> None:
    book: StatsBook[str] = StatsBook()
    book.add(n("alice:a1"), watched())
    book.add(n(":solo"), watched())
    assert book.subscribe(n("alice:"), 5, "path") is None
    assert book.subscribe(n(":alice"), 5, "colliding") == "path"  # same node, replaced
    book.subscribe(n(":"), 5, "root")
    out = {(sub, str(msg.header.name)) for sub, _, msg in book.tick(T0 + timedelta(seconds=30))}
    assert out == {("colliding", "alice:a1"), ("root", "alice:a1"), ("root", ":solo")}
    book.unsubscribe(n(":"), "root")
    book.remove(n("alice:a1"))
    assert book.tick(T0) == []


def test_samples_grow_with_uptime() -> None:
    early, late = sample(watched(), T0), sample(watched(64), T0 + timedelta(seconds=100))
    assert late.rusage.stime.microseconds + late.rusage.stime.seconds * 10**6 > (
        early.rusage.stime.microseconds
    )
    assert late.kinfo_mem is not None and late.kinfo_mem.vsize == 66 << 20
    assert [i.bridge for i in late.ifdata] == ["service0"]
