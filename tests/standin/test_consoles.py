"""Console ring buffers, line splitting and subscriptions (albatross_console.ml), synchronously."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from core.wire import Name
from standin.consoles import LINE_LIMIT, RING_SIZE, Consoles, LineSplitter, Ring

T0 = datetime(2026, 11, 27, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_ring_read_last_and_history() -> None:
    ring = Ring()
    for i in range(5):
        ring.write(at(i), f"l{i}")
    assert [line for _, line in ring.read_last(3)] == ["l2", "l3", "l4"]
    assert [line for _, line in ring.read_last(99)] == ["l0", "l1", "l2", "l3", "l4"]
    assert ring.read_last(0) == []
    assert [line for _, line in ring.read_history(at(3))] == ["l3", "l4"]
    assert ring.read_history(at(9)) == []


def test_ring_keeps_the_last_1024() -> None:
    ring = Ring()
    for i in range(RING_SIZE + 10):
        ring.write(at(i), str(i))
    lines = ring.read_last(5000)
    assert len(lines) == RING_SIZE and lines[0][1] == "10"


def test_splitter_lines_empty_and_partial() -> None:
    s = LineSplitter()
    assert s.feed(b"a\n\nb") == ["a"]
    assert s.feed(b"c\nd") == ["bc"]
    assert s.feed(b"\n") == ["d"]


def test_splitter_truncates_long_lines_and_drops_the_rest() -> None:
    s = LineSplitter()
    out = s.feed(b"x" * 600)
    assert out == ["x" * LINE_LIMIT + " [truncated]"]
    assert s.feed(b"yyy\nnext\n") == ["next"]


def test_splitter_keeps_invalid_utf8() -> None:
    assert LineSplitter().feed(b"\xff\xfe ok\n") == [
        b"\xff\xfe ok".decode("utf-8", "surrogateescape")
    ]


@given(st.lists(st.binary(max_size=50), max_size=20))
def test_splitter_is_chunking_independent(chunks: list[bytes]) -> None:
    whole = b"".join(chunks) + b"\n"
    one = LineSplitter().feed(whole)
    pieces = LineSplitter()
    out: list[str] = []
    for chunk in [*chunks, b"\n"]:
        out += pieces.feed(chunk)
    assert out == one
    assert all(line and "\n" not in line for line in out)


def test_subscribe_waiting_then_subscribed() -> None:
    c: Consoles[str] = Consoles()
    name = Name.parse(":ghost")
    ring, text, dropped = c.subscribe(name, 5, "s1")
    assert (ring, text, dropped) == (None, "waiting for VM", [])
    ring2, _ = c.add(name, 10)
    entry = c.entry(name)
    assert entry is not None and [s for _, s in entry.subscribers] == ["s1"]
    ring3, text, _ = c.subscribe(name, 5, "s2")
    assert ring3 is ring2 and text == "subscribed"


def test_oldest_subscriber_is_dropped_beyond_the_maximum() -> None:
    c: Consoles[str] = Consoles(max_subscribers=2)
    name = Name.parse(":t")
    c.add(name, 10)
    dropped_all = []
    for s in ("a", "b", "c", "d"):
        dropped_all += c.subscribe(name, 5, s)[2]
    # albatross compares ``length - 1 >= maximum`` before adding: maximum + 1 stay subscribed.
    assert dropped_all == ["a"]
    entry = c.entry(name)
    assert entry is not None and [s for _, s in entry.subscribers] == ["d", "c", "b"]


def test_inactive_consoles_and_dropping_beyond_the_path_limit() -> None:
    c: Consoles[str] = Consoles()
    for label in ("b", "a", "c"):
        c.add(Name(("alice",), label), 1)
    # limit 1 allows 2 buffers; nothing inactive to drop, so all three stay
    for label in ("a", "b"):
        c.deactivate(Name(("alice",), label))
    assert c.list_inactive(("alice",)) == [Name((), "b"), Name((), "a")]
    assert c.list_inactive(()) == [Name(("alice",), "b"), Name(("alice",), "a")]
    c.add(Name(("alice",), "d"), 1)  # drops the smallest inactive: a
    assert c.entry(Name(("alice",), "a")) is None
    assert c.list_inactive(("alice",)) == [Name((), "b")]


def test_unsubscribe_removes_waiting_entries() -> None:
    c: Consoles[str] = Consoles()
    name = Name.parse("p:x")
    c.subscribe(name, 5, "s")
    c.unsubscribe(name, "s")
    assert c.entry(name) is None
    assert c.list_inactive(()) == []


def test_the_latest_console_add_limit_applies_to_the_path() -> None:
    c: Consoles[str] = Consoles()
    c.subscribe(Name(("p",), "w"), 5, "s")  # creates the path group with limit 1
    c.add(Name(("p",), "a"), 5)
    c.deactivate(Name(("p",), "a"))
    c.add(Name(("p",), "b"), 5)  # 3 buffers <= limit 5 + 1: nothing dropped
    assert c.entry(Name(("p",), "a")) is not None
    c.add(Name(("p",), "c"), 1)  # limit now 1: the inactive `a` goes
    assert c.entry(Name(("p",), "a")) is None
