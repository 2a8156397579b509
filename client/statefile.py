"""albatross's persistent state file (``<dbdir>/state``), read for inspect-dump/extract-dump.

The file is one raw DER ``State`` value (wire.md §11, ``vmm_asn.ml``): a CHOICE
whose current alternative ``[6]`` holds the unikernel configurations and the
policies, each a trie flattened into ``SEQUENCE OF SEQUENCE { name, value }``.
We read the alternatives that carry the configurations the protocol core
already knows (``[4]`` v3 configs, ``[5]`` v4, ``[6]`` current) and name the
older ones; built from the core's DER combinators, so a corrupt file gives only
:class:`ParseError`.  Pure: bytes in, values out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tlsendpoint.errors import ParseError
from tlsendpoint.wire import Name, Policy, UnikernelConfig
from tlsendpoint.wire.der import NO, Alt, Choice, Codec, Field, Sequence_, SequenceOf, when
from tlsendpoint.wire.grammar import (
    NAME,
    POLICY,
    UNIKERNEL_CONFIG,
    UNIKERNEL_CONFIG_V3,
    UNIKERNEL_CONFIG_V4,
)

__all__ = ["MAX_STATE", "State", "decode_state", "encode_state"]

#: Largest state file we read (it holds every unikernel image).
MAX_STATE = 1 << 30


@dataclass(frozen=True)
class State:
    unikernels: tuple[tuple[Name, UnikernelConfig], ...]
    policies: tuple[tuple[Name, Policy], ...]


def _trie(label: str, value: Codec[Any]) -> Codec[tuple[tuple[Name, Any], ...]]:
    entry: Codec[tuple[Name, Any]] = Sequence_(
        f"{label} entry",
        [Field("name", NAME), Field("value", value)],
        lambda name, v: (name, v),
        lambda pair: pair,
    )
    return SequenceOf(label, entry)


def _both(config: Codec[UnikernelConfig], label: str) -> Codec[State]:
    return Sequence_(
        label,
        [
            Field("unikernels", _trie("unikernels", config)),
            Field("policies", _trie("policies", POLICY)),
        ],
        State,
        lambda s: (s.unikernels, s.policies),
    )


def _is(n: int) -> Any:
    # Encoding always writes the current alternative [6]; older ones are read-only.
    return when(State, get=lambda s: s) if n == 6 else (lambda _value: NO)


STATE: Codec[State] = Choice(
    "state",
    [
        Alt(
            4,
            "unikernels and policies (v3)",
            _both(UNIKERNEL_CONFIG_V3, "state v3"),
            lambda s: s,
            _is(4),
        ),
        Alt(
            5,
            "unikernels and policies (v4)",
            _both(UNIKERNEL_CONFIG_V4, "state v4"),
            lambda s: s,
            _is(5),
        ),
        Alt(6, "unikernels and policies", _both(UNIKERNEL_CONFIG, "state"), lambda s: s, _is(6)),
    ],
    removed={
        0: "is an albatross state of before 2019 (unikernel-OLD1): not supported",
        1: "is an albatross state of before 2019 (unikernel-OLD0): not supported",
        2: "is an old albatross state (unikernel-OLD2): not supported",
        3: "is an old albatross state (unikernel-OLD3): not supported",
        7: "is the 'nyi' placeholder state",
    },
)


def decode_state(data: bytes) -> State:
    if not data:
        raise ParseError("state file: empty")
    try:
        return STATE.decode(data)
    except ParseError as exc:
        raise exc.within("state file") from None


def encode_state(state: State) -> bytes:
    return STATE.encode(state)
