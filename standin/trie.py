"""A trie of values keyed by albatross names (``Vmm_trie``), as plain data.

albatross keys its tries by ``path + [label]``, so the path ``alice:`` and the
unikernel ``:alice`` share a node (behaviour.md §1.1); each entry remembers
whether it was inserted as a path.  We keep the entries in a flat dict keyed
by that label tuple and derive albatross's traversal orders by sorting:

* :meth:`all` is pre-order with children in ascending label order;
* :meth:`fold` visits in post-order (children ascending, then the node) with
  names *relative* to the starting path, exactly like ``Vmm_trie.fold``.
  albatross callers accumulate with ``::``, so their lists come out reversed;
  :meth:`fold_consed` gives that reversed order directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from core.wire import Name

__all__ = ["Trie"]

V = TypeVar("V")

# Sorts after every label ([a-z0-9.-]): a node comes after its children (post-order).
_AFTER_CHILDREN = "\U0010ffff"


def _name_of(key: tuple[str, ...], is_path: bool) -> Name:
    if is_path or not key:
        return Name(key, None)
    return Name(key[:-1], key[-1])


class Trie(Generic[V]):
    """Mutable trie; :meth:`copy` is cheap (the values are immutable)."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, ...], tuple[V, bool]] = {}

    def copy(self) -> Trie[V]:
        other: Trie[V] = Trie()
        other._entries = dict(self._entries)
        return other

    def __len__(self) -> int:
        return len(self._entries)

    def insert(self, name: Name, value: V) -> V | None:
        """Insert or replace; returns the previous value at the same key."""
        old = self._entries.get(name.key)
        self._entries[name.key] = (value, name.is_path)
        return None if old is None else old[0]

    def remove(self, name: Name) -> None:
        self._entries.pop(name.key, None)

    def find(self, name: Name) -> V | None:
        entry = self._entries.get(name.key)
        return None if entry is None else entry[0]

    def all(self) -> list[tuple[Name, V]]:
        """Every entry with its full name, pre-order, children ascending (``Vmm_trie.all``)."""
        return [(_name_of(k, p), v) for k, (v, p) in sorted(self._entries.items())]

    def fold(self, path: tuple[str, ...]) -> list[tuple[Name, V]]:
        """Entries at and below *path*, names relative to it, in ``Vmm_trie.fold`` visit order."""
        n = len(path)
        below = [(k[n:], e) for k, e in self._entries.items() if k[:n] == path]
        below.sort(key=lambda item: (*item[0], _AFTER_CHILDREN))
        return [(_name_of(rel, p), v) for rel, (v, p) in below]

    def fold_consed(self, path: tuple[str, ...]) -> list[tuple[Name, V]]:
        """:meth:`fold` as albatross's ``(x :: acc)`` accumulators return it (reversed)."""
        return list(reversed(self.fold(path)))

    def values_below(self, path: tuple[str, ...]) -> Iterator[V]:
        n = len(path)
        return (v for k, (v, _) in self._entries.items() if k[:n] == path)

    def collect(self, name: Name) -> list[tuple[Name, V]]:
        """Entries on the way from the root to *name* (inclusive), deepest first."""
        key = name.key
        found = [
            (_name_of(key[:i], self._entries[key[:i]][1]), self._entries[key[:i]][0])
            for i in range(len(key) + 1)
            if key[:i] in self._entries
        ]
        return list(reversed(found))
