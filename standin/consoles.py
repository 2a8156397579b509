"""albatross-console's state (albatross_console.ml, vmm_ring.ml) as pure code.

Per unikernel a ring buffer of the last 1024 console lines, whether the
unikernel is running, and its subscribers (at most ``max_subscribers``; the
oldest is dropped).  Entries are grouped by path with the ``Console_add``
limit *n* of that path: adding a console beyond n+1 drops an inactive one.
Subscribers are opaque values supplied by the shell (a channel to a
connection); the functions return the subscribers the shell must close.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from core.wire import Name
from standin.trie import Trie

__all__ = ["LINE_LIMIT", "RING_SIZE", "ConsoleEntry", "Consoles", "LineSplitter", "Ring"]

RING_SIZE = 1024
LINE_LIMIT = 512

S = TypeVar("S")


class Ring:
    """``Vmm_ring``: the last :data:`RING_SIZE` (time, line) entries."""

    def __init__(self, size: int = RING_SIZE) -> None:
        self._entries: deque[tuple[datetime, str]] = deque(maxlen=size)

    def write(self, when: datetime, line: str) -> None:
        self._entries.append((when, line))

    def read_last(self, count: int) -> list[tuple[datetime, str]]:
        """The last *count* entries (capped by the ring size), oldest first."""
        if count <= 0:
            return []
        return list(self._entries)[-count:]

    def read_history(self, since: datetime) -> list[tuple[datetime, str]]:
        """Entries not earlier than *since*, oldest first (albatross walks back from the end)."""
        out: list[tuple[datetime, str]] = []
        for when, line in reversed(self._entries):
            if when < since:
                break
            out.append((when, line))
        out.reverse()
        return out


class LineSplitter:
    """Cut console output into lines as albatross-console does.

    Lines end at ``\\n``; empty lines are dropped; a line longer than 512
    octets is cut there, gets `` [truncated]`` and the rest up to the next
    newline is dropped.  Octets that are not UTF-8 survive via surrogateescape.
    """

    def __init__(self) -> None:
        self._partial = bytearray()
        self._dropping = False

    def feed(self, data: bytes) -> list[str]:
        lines: list[str] = []
        pieces = data.split(b"\n")
        for i, piece in enumerate(pieces):
            lines.extend(self._add_partial(piece))
            if i < len(pieces) - 1:  # a newline ends the line
                if not self._dropping and self._partial:
                    lines.append(_text(bytes(self._partial)))
                self._partial.clear()
                self._dropping = False
        return lines

    def _add_partial(self, piece: bytes) -> list[str]:
        if self._dropping:
            return []
        self._partial += piece
        if len(self._partial) >= LINE_LIMIT:
            line = _text(bytes(self._partial[:LINE_LIMIT])) + " [truncated]"
            self._partial.clear()
            self._dropping = True
            return [line]
        return []


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


@dataclass
class ConsoleEntry(Generic[S]):
    subscribers: list[tuple[int, S]] = field(default_factory=list)  # newest first
    active: bool = False
    ring: Ring | None = None


@dataclass
class _PathConsoles(Generic[S]):
    limit: int
    entries: dict[str, ConsoleEntry[S]] = field(default_factory=dict)


class Consoles(Generic[S]):
    """All console buffers, keyed by path then label."""

    def __init__(self, max_subscribers: int = 5) -> None:
        self.max_subscribers = max_subscribers
        self._paths: Trie[_PathConsoles[S]] = Trie()

    def _group(self, path: tuple[str, ...]) -> _PathConsoles[S] | None:
        return self._paths.find(Name(path, None))

    def entry(self, name: Name) -> ConsoleEntry[S] | None:
        group = self._group(name.path)
        if group is None or name.label is None:
            return None
        return group.entries.get(name.label)

    def add(self, name: Name, limit: int) -> tuple[Ring, list[S]]:
        """``Console_add``: (re)activate *name*'s buffer; returns it and subscribers to close."""
        assert name.label is not None
        group = self._group(name.path)
        dropped: list[S] = []
        if group is None:
            group = _PathConsoles(limit)
            self._paths.insert(Name(name.path, None), group)
        group.limit = limit  # albatross stores the latest Console_add limit for the path
        entry = group.entries.get(name.label)
        if entry is None:
            entry = ConsoleEntry[S](active=True, ring=Ring())
            group.entries[name.label] = entry
            dropped = self._maybe_drop(group, group.limit)
        else:
            entry.active = True
            if entry.ring is None:
                entry.ring = Ring()
        assert entry.ring is not None
        return entry.ring, dropped

    def _maybe_drop(self, group: _PathConsoles[S], limit: int) -> list[S]:
        # albatross allows one more buffer than the path's unikernel limit.
        if len(group.entries) <= limit:
            return []
        inactive = sorted(k for k, e in group.entries.items() if not e.active)
        if not inactive:
            return []
        victim = group.entries.pop(inactive[0])
        return [s for _, s in victim.subscribers]

    def deactivate(self, name: Name) -> None:
        entry = self.entry(name)
        if entry is not None:
            entry.active = False

    def subscribe(
        self, name: Name, version: int, subscriber: S
    ) -> tuple[Ring | None, str, list[S]]:
        """Returns the ring to replay (or None), the reply text and subscribers to close."""
        assert name.label is not None
        group = self._group(name.path)
        if group is None:
            group = _PathConsoles[S](1)
            group.entries[name.label] = ConsoleEntry[S](subscribers=[(version, subscriber)])
            self._paths.insert(Name(name.path, None), group)
            return None, "waiting for VM", []
        entry = group.entries.get(name.label)
        if entry is None:
            group.entries[name.label] = ConsoleEntry[S](subscribers=[(version, subscriber)])
            dropped = self._maybe_drop(group, group.limit)
            return None, "waiting for VM", dropped
        dropped = []
        if len(entry.subscribers) - 1 >= self.max_subscribers:
            dropped = [entry.subscribers.pop()[1]]
        entry.subscribers.insert(0, (version, subscriber))
        if entry.ring is None:
            return None, "waiting for VM", dropped
        return entry.ring, "subscribed", dropped

    def unsubscribe(self, name: Name, subscriber: S) -> None:
        group = self._group(name.path)
        if group is None or name.label is None:
            return
        entry = group.entries.get(name.label)
        if entry is None:
            return
        entry.subscribers = [(v, s) for v, s in entry.subscribers if s is not subscriber]
        if not entry.active and entry.ring is None and not entry.subscribers:
            del group.entries[name.label]
        if not group.entries:
            self._paths.remove(Name(name.path, None))

    def list_inactive(self, path: tuple[str, ...]) -> list[Name]:
        """Names (relative to *path*) of stopped unikernels whose buffer still exists."""
        out: list[Name] = []
        for rel, group in self._paths.fold(path):
            for label in sorted(group.entries):
                entry = group.entries[label]
                if not entry.active and entry.ring is not None:
                    out.insert(0, Name(rel.path, label))
        return out
