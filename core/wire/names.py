"""albatross names: labels, paths and ``path:label`` strings (Vmm_core.Name).

A *label* is 1-63 characters of ``[A-Za-z0-9.-]`` not starting with ``-``,
stored lower-cased.  A *path* is a tuple of labels (``()`` is the root).  A
:class:`Name` is a path plus an optional label: without a label it names a
path (policies, "everything below"), with one it names a unikernel, block
device or console.

The wire form joins the path with ``:`` and appends ``:`` and the label:
``:`` is the root, ``alice:`` a path, ``:hello`` a root-level unikernel.  The
reader is albatross's: it drops one leading empty component and lower-cases,
so ``Hello`` and ``:hello`` are the same name.  We always write the canonical
form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import ParseError, UsageError

__all__ = ["ROOT", "Name", "check_label", "is_valid_label"]

_LABEL = re.compile(r"[A-Za-z0-9.\-]{1,63}")

LABEL_RULE = "only [a-zA-Z0-9-.] allowed, 1 to 63 chars, no leading '-'"


def is_valid_label(text: str) -> bool:
    """True if *text* is a label albatross accepts (before lower-casing)."""
    return _LABEL.fullmatch(text) is not None and not text.startswith("-")


def check_label(text: str) -> str:
    """Return the normalised (lower-case) label, or raise :class:`UsageError`."""
    if not is_valid_label(text):
        raise UsageError(f"invalid label {text!r} ({LABEL_RULE})")
    return text.lower()


@dataclass(frozen=True, slots=True)
class Name:
    """A (path, optional label) pair; build with :meth:`of`, :meth:`parse` or :attr:`ROOT`."""

    path: tuple[str, ...] = ()
    label: str | None = None

    def __post_init__(self) -> None:
        for part in self.path:
            if not is_valid_label(part) or part != part.lower():
                raise UsageError(f"invalid path component {part!r} ({LABEL_RULE}, lower case)")
        if self.label is not None and (
            not is_valid_label(self.label) or self.label != self.label.lower()
        ):
            raise UsageError(f"invalid label {self.label!r} ({LABEL_RULE}, lower case)")

    # -- construction -----------------------------------------------------

    @classmethod
    def of(cls, path: tuple[str, ...] | list[str] = (), label: str | None = None) -> Name:
        """Build a name from user text, validating and lower-casing every label."""
        return cls(
            tuple(check_label(p) for p in path),
            None if label is None else check_label(label),
        )

    @classmethod
    def parse(cls, text: str) -> Name:
        """Parse a wire string the way albatross does (``Name.of_string``).

        Raises :class:`ParseError`, since names usually arrive from a peer.
        """
        if text == "":
            raise ParseError("name: empty string")
        if text.endswith(":"):
            parts = text[:-1].split(":")
            if parts and parts[0] == "":
                parts = parts[1:]
            label = None
        else:
            parts = text.split(":")
            if parts[0] == "":
                parts = parts[1:]
            label = parts.pop()
            if not is_valid_label(label):
                raise ParseError(f"name {text!r}: invalid label {label!r} ({LABEL_RULE})")
            label = label.lower()
        for part in parts:
            if not is_valid_label(part):
                raise ParseError(f"name {text!r}: invalid path component {part!r} ({LABEL_RULE})")
        return cls(tuple(p.lower() for p in parts), label)

    # -- views ------------------------------------------------------------

    @property
    def is_path(self) -> bool:
        """True when the name has no label (it names a path)."""
        return self.label is None

    @property
    def is_root(self) -> bool:
        return not self.path and self.label is None

    @property
    def key(self) -> tuple[str, ...]:
        """albatross's trie key: ``path + [label]`` (so ``alice:`` and ``:alice`` collide)."""
        return self.path if self.label is None else (*self.path, self.label)

    def as_path(self) -> Name:
        """The path part alone, as a path name."""
        return Name(self.path, None)

    def child(self, label: str) -> Name:
        """The name ``label`` inside this name's path."""
        return Name(self.path, check_label(label))

    def sub_path(self, label: str) -> Name:
        """The path one level below this path (this name must be a path)."""
        return Name((*self.path, check_label(label)), None)

    def under(self, prefix: tuple[str, ...]) -> Name:
        """This name with *prefix* prepended to its path."""
        return Name((*prefix, *self.path), self.label)

    def relative_to(self, prefix: tuple[str, ...]) -> Name:
        """This name with the leading *prefix* removed from its path."""
        if self.path[: len(prefix)] != prefix:
            raise UsageError(f"{self} is not below {':'.join(prefix)}:")
        return Name(self.path[len(prefix) :], self.label)

    def is_below(self, prefix: tuple[str, ...]) -> bool:
        """True if this name lies at or below path *prefix* (by trie key, as albatross folds)."""
        return self.key[: len(prefix)] == prefix

    def __str__(self) -> str:
        return ":".join(self.path) + ":" + (self.label or "")

    def pretty(self) -> str:
        """albatross's pretty form: ``[unikernel: alice:a1]``."""
        return f"[unikernel: {self}]"


#: The root path, written ``:`` on the wire.
ROOT = Name()
