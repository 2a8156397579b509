"""The small pure pieces: the trie's orders and the stats book (the state file: tests/wire)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.wire import Name
from standin.stats import StatsBook, Watched, sample
from standin.trie import Trie

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
