"""albatrossd's state file (``<dbdir>/state``, vmm_asn.ml ``state``; wire.md §11).

The stand-in writes the very format albatrossd 2.7 writes, so a state
directory can move between the two: raw DER, no framing, of

    State ::= CHOICE { ..., uk-and-policy [6] EXPLICIT SEQUENCE {
                  unikernels Trie{UnikernelConfig}, policies Trie{Policy} }, ... }
    Trie{X} ::= SEQUENCE OF SEQUENCE { name UTF8String, value X }

with the entries in trie order (parents first).  Reading also accepts the two
older layouts that carry policies ([4] with v3 configs, [5] with v4 configs);
the oldest ones ([0]-[3], before policies existed) and the unfinished [7] are
refused with a clear message.  The file comes from disk, not from a peer, but
it is decoded with the same strict codec, so a corrupt file gives a
:class:`ParseError`, never a crash.
"""

from __future__ import annotations

from typing import Any, TypeVar

from tlsendpoint.errors import ParseError
from tlsendpoint.wire import Name, Policy, UnikernelConfig
from tlsendpoint.wire.der import NO, Alt, Choice, Codec, Field, Sequence_, SequenceOf
from tlsendpoint.wire.grammar import (
    NAME,
    POLICY,
    UNIKERNEL_CONFIG,
    UNIKERNEL_CONFIG_V3,
    UNIKERNEL_CONFIG_V4,
)

__all__ = ["decode_state", "encode_state"]

V = TypeVar("V")

Entries = tuple[tuple[Name, Any], ...]
State = tuple[Entries, Entries]  # (unikernels, policies)


def _trie(label: str, value: Codec[Any]) -> Codec[Entries]:
    entry: Codec[tuple[Name, Any]] = Sequence_(
        f"{label} entry",
        [Field("name", NAME), Field("value", value)],
        lambda name, v: (name, v),
        lambda e: e,
    )
    return SequenceOf(label, entry)


def _layout(config: Codec[UnikernelConfig]) -> Codec[State]:
    return Sequence_(
        "state",
        [
            Field("unikernels", _trie("unikernels", config)),
            Field("policies", _trie("policies", POLICY)),
        ],
        lambda unikernels, policies: (unikernels, policies),
        lambda state: state,
    )


def _current(state: State) -> Any:
    return state


def _never(_state: State) -> Any:
    return NO  # old layouts are read, never written


STATE: Codec[State] = Choice(
    "state",
    [
        Alt(6, "uk-and-policy", _layout(UNIKERNEL_CONFIG), _current, _current),
        Alt(5, "uk-and-policy-V4", _layout(UNIKERNEL_CONFIG_V4), _current, _never),
        Alt(4, "uk-and-policy-OLD", _layout(UNIKERNEL_CONFIG_V3), _current, _never),
    ],
    removed={
        0: "(unikernels without policies, albatross before 1.0) is not supported",
        1: "(unikernels without policies, albatross before 1.0) is not supported",
        2: "(unikernels without policies, albatross before 1.0) is not supported",
        3: "(unikernels without policies, albatross before 1.0) is not supported",
        7: "is not yet implemented (albatross refuses it too)",
    },
)


def encode_state(
    policies: list[tuple[Name, Policy]], unikernels: list[tuple[Name, UnikernelConfig]]
) -> bytes:
    """The state file's bytes; entries are expected in trie order (``Trie.all``)."""
    return STATE.encode((tuple(unikernels), tuple(policies)))


def decode_state(
    data: bytes,
) -> tuple[list[tuple[Name, Policy]], list[tuple[Name, UnikernelConfig]]]:
    if not data:
        raise ParseError("state file: empty")
    try:
        unikernels, policies = STATE.decode(data)
    except ParseError as e:
        raise e.within("state file") from None
    for label, entries in (("unikernel", unikernels), ("policy", policies)):
        keys = [name.key for name, _ in entries]
        if len(set(keys)) != len(keys):
            raise ParseError(f"state file: a {label} name appears twice")
    return list(policies), list(unikernels)
