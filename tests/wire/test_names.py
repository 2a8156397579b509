"""albatross names: parsing, printing and the label rules."""

from __future__ import annotations

import pytest

from core.errors import ParseError, UsageError
from core.wire import ROOT, Name, check_label


@pytest.mark.parametrize(
    ("text", "path", "label", "canonical"),
    [
        (":", (), None, ":"),
        ("foo:", ("foo",), None, "foo:"),
        ("foo:bar:", ("foo", "bar"), None, "foo:bar:"),
        (":hello", (), "hello", ":hello"),
        ("hello", (), "hello", ":hello"),
        ("Hello", (), "hello", ":hello"),
        ("foo:bar", ("foo",), "bar", "foo:bar"),
        (":foo:bar", ("foo",), "bar", "foo:bar"),
        ("a:b:c", ("a", "b"), "c", "a:b:c"),
        ("Dave:u1", ("dave",), "u1", "dave:u1"),
        (":.", (), ".", ":."),
        ("a" * 63 + ":", ("a" * 63,), None, "a" * 63 + ":"),
    ],
)
def test_parse_and_print(
    text: str, path: tuple[str, ...], label: str | None, canonical: str
) -> None:
    name = Name.parse(text)
    assert (name.path, name.label) == (path, label)
    assert str(name) == canonical
    assert Name.parse(canonical) == name


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty string"),
        ("::", "invalid path component ''"),
        ("a::b", "invalid path component ''"),
        ("-a", "invalid label '-a'"),
        ("a/b", "invalid label 'a/b'"),
        ("a" * 64, "invalid label"),
        ("x y:", "invalid path component 'x y'"),
        ("é", "invalid label"),
    ],
)
def test_invalid_names(text: str, match: str) -> None:
    with pytest.raises(ParseError, match=match):
        Name.parse(text)


def test_pretty_and_keys() -> None:
    assert ROOT.pretty() == "[unikernel: :]"
    assert Name(("alice",), "a1").pretty() == "[unikernel: alice:a1]"
    assert Name(("alice",)).pretty() == "[unikernel: alice:]"
    # albatross's trie quirk: a path and a root-level name share a key (behaviour.md §9.3).
    assert Name(("alice",)).key == Name((), "alice").key
    assert Name(("alice", "bob"), "b1").is_below(("alice",))
    assert not Name(("alicex",), "b1").is_below(("alice",))
    assert Name(("alice", "bob"), "b1").relative_to(("alice", "bob")) == Name((), "b1")


def test_constructor_refuses_non_canonical_labels() -> None:
    with pytest.raises(UsageError, match="lower case"):
        Name(("Alice",))
    assert Name.of(["Alice"], "Web") == Name(("alice",), "web")
    assert check_label("Dave") == "dave"
    with pytest.raises(UsageError, match="invalid label"):
        check_label("")
