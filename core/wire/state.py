"""albatross's state file (``<dbdir>/state``): every layout albatross 2.7.2 reads.

The file is one raw DER value, no framing (``vmm_asn.ml`` ``state``, wire.md
§11).  Its CHOICE tag is the only version information; albatrossd writes
``[6]`` and reads all of

    [0] Trie{ConfigV1}     [1] Trie{ConfigV0}     [2] Trie{ConfigV2}
    [3] Trie{ConfigV3}     [4] SEQUENCE { Trie{ConfigV3}, Trie{Policy} }
    [5] SEQUENCE { Trie{ConfigV4}, Trie{Policy} }
    [6] SEQUENCE { Trie{UnikernelConfig}, Trie{Policy} }      -- written
    Trie{X} ::= SEQUENCE OF SEQUENCE { name UTF8String, value X }

so a host upgraded from an old albatross keeps an old layout until albatrossd
next writes the file.  ``[7]`` ("NYI") makes albatross raise; we refuse it.
The V3, V4 and current configurations are the wire grammar's; V0-V2 exist only
here, read-only:

    ConfigV0 ::= SEQUENCE { cpu INTEGER, memory INTEGER, block UTF8String OPTIONAL,
                 network-interfaces SEQUENCE OF UTF8String OPTIONAL,
                 image CHOICE { hvt-amd64 [0], hvt-arm64 [1], hvt-amd64-compressed [2]
                                (each EXPLICIT OCTET STRING) },
                 arguments SEQUENCE OF UTF8String OPTIONAL }
    ConfigV1 ::= SEQUENCE { typ, compressed BOOLEAN, image OCTET STRING, fail-behaviour,
                 cpuid INTEGER, memory INTEGER, blocks [0] SET OF UTF8String OPTIONAL,
                 bridges [1] SET OF UTF8String OPTIONAL,
                 arguments [2] SEQUENCE OF UTF8String OPTIONAL }
    ConfigV2 ::= ConfigV1 but bridges [1] SEQUENCE OF SEQUENCE {
                 netif UTF8String, bridge UTF8String OPTIONAL } OPTIONAL

albatross fills what an old layout lacks as ``v0_unikernel_config`` ...
``v2_unikernel_config`` do: typ solo5 and fail-behaviour quit for V0 (whose
image tag says whether it is compressed), no startup, add-name true, one CPU.

albatross keeps a configuration's block devices and bridges as *lists*: for a
SET OF that is the file's order, which DER fixes (sorted by encoding); V0's
networks and V2's bridges are a SEQUENCE OF in whatever order the old
albatross held them.  :class:`StoredUnikernel` keeps that order (and any
duplicates) for printing, as ``albatross-client inspect-dump`` prints it; its
``config`` is the usual set-based value.

The tries come back in trie order (``Vmm_trie.all``: parents first, children by
label), which is also the order albatross writes.  Where albatross 2.7.2 dies
with an exception instead of a parse error - a malformed name or a name twice
in one trie (``trie``: ``invalid_arg``, ``assert``), or ``[7]`` - we raise
:class:`ParseError`.  Like the rest of the codec we refuse the non-canonical
forms no albatross ever wrote (a present but empty list, a SET OF out of DER
order), so a corrupt or hostile file gives only :class:`ParseError`.  Pure:
bytes in, values out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from core.errors import ParseError, UsageError
from core.wire import messages as m
from core.wire.der import (
    BOOLEAN,
    INTEGER,
    NO,
    OCTETS,
    UTF8,
    Alt,
    Choice,
    Codec,
    Explicit,
    Field,
    Mapped,
    Sequence_,
    SequenceOf,
    SetOf,
)
from core.wire.grammar import (
    ARGV,
    BLOCK_DEVICE,
    FAIL_BEHAVIOUR,
    NAME,
    NET_IF,
    POLICY,
    TYP,
    UNIKERNEL_CONFIG,
    UNIKERNEL_CONFIG_V3,
    UNIKERNEL_CONFIG_V4,
)
from core.wire.names import Name
from core.wire.policy import Policy

__all__ = ["CURRENT_LAYOUT", "State", "StoredUnikernel", "decode_state", "encode_state"]

#: The alternative albatross 2.7 writes.
CURRENT_LAYOUT = 6


@dataclass(frozen=True, slots=True)
class StoredUnikernel:
    """One unikernel of the state file; its devices also in albatross's list order."""

    name: Name
    config: m.UnikernelConfig
    blocks: tuple[m.BlockDevice, ...]
    bridges: tuple[m.NetIf, ...]


@dataclass(frozen=True, slots=True)
class State:
    """A decoded state file: both tries in trie order, and the layout (CHOICE tag) it had."""

    unikernels: tuple[StoredUnikernel, ...]
    policies: tuple[tuple[Name, Policy], ...]
    layout: int = CURRENT_LAYOUT


# A trie value as read: the configuration, its block devices and its bridges in list order.
Listed = tuple[m.UnikernelConfig, tuple[m.BlockDevice, ...], tuple[m.NetIf, ...]]
Entries = tuple[tuple[Name, Any], ...]


def _in_der_order(config: m.UnikernelConfig) -> Listed:
    """The lists albatross holds after reading SET OFs: the file's order, which DER sorts."""
    return (
        config,
        tuple(sorted(config.blocks, key=BLOCK_DEVICE.encode)),
        tuple(sorted(config.bridges, key=NET_IF.encode)),
    )


def _listing(config: Codec[m.UnikernelConfig]) -> Codec[Listed]:
    return Mapped(config, lambda listed: listed[0], _in_der_order)


def _never_written(_value: object) -> tuple[Any, ...]:
    raise UsageError("albatross 2.7 never writes an old configuration layout")


def _never(_value: object) -> Any:
    return NO


def _present(label: str, items: Iterable[Any] | None) -> tuple[Any, ...]:
    """An OPTIONAL list albatross omitted when empty: absent -> (); present but empty: refused."""
    if items is None:
        return ()
    found = tuple(items)
    if not found:
        raise ParseError(f"{label}: present but empty (albatross omits an empty list)")
    return found


def _utf8_set(label: str, items: frozenset[str] | None) -> tuple[str, ...]:
    """A SET OF UTF8String in the file's (DER) order."""
    return tuple(sorted(_present(label, items), key=UTF8.encode))


def _old(
    typ: m.Typ,
    compressed: bool,
    image: bytes,
    fail: m.FailBehaviour,
    cpuid: int,
    memory: int,
    blocks: tuple[m.BlockDevice, ...],
    bridges: tuple[m.NetIf, ...],
    argv: tuple[str, ...] | None,
) -> Listed:
    """A V0-V2 configuration with albatross's defaults for what the layout lacks."""
    config = m.UnikernelConfig(
        image=image,
        memory=memory,
        cpuids=frozenset({cpuid}),
        compressed=compressed,
        typ=typ,
        fail_behaviour=fail,
        startup=None,
        add_name=True,
        blocks=frozenset(blocks),
        bridges=frozenset(bridges),
        argv=argv,
        numcpus=1,
        linux_boot_partition=None,
    )
    return config, blocks, bridges


# -- V0 (vmm_asn.ml v0_unikernel_config) ------------------------------------------


def _image(n: int, name: str, compressed: bool) -> Alt[tuple[bool, bytes]]:
    return Alt(n, name, OCTETS, lambda image: (compressed, image), _never)


V0_IMAGE: Codec[tuple[bool, bytes]] = Choice(
    "image",
    [
        _image(0, "hvt-amd64", False),
        _image(1, "hvt-arm64", False),
        _image(2, "hvt-amd64-compressed", True),
    ],
)


def _v0(
    cpu: int,
    memory: int,
    block: str | None,
    networks: tuple[str, ...] | None,
    image: tuple[bool, bytes],
    argv: tuple[str, ...] | None,
) -> Listed:
    blocks = () if block is None else (m.BlockDevice(block),)
    bridges = tuple(m.NetIf(n) for n in _present("network interfaces", networks))
    compressed, data = image
    return _old(m.Typ.SOLO5, compressed, data, m.Quit(), cpu, memory, blocks, bridges, argv)


UNIKERNEL_CONFIG_V0: Codec[Listed] = Sequence_(
    "unikernel config v0",
    [
        Field("cpu", INTEGER),
        Field("memory", INTEGER),
        Field("block", UTF8, optional=True),
        Field("network interfaces", SequenceOf("network interfaces", UTF8), optional=True),
        Field("image", V0_IMAGE),
        Field("arguments", SequenceOf("arguments", UTF8), optional=True),
    ],
    _v0,
    _never_written,
)

# -- V1 and V2 (v1_unikernel_config, v2_unikernel_config) -------------------------

_V1_HEAD: list[Field[Any]] = [
    Field("typ", TYP),
    Field("compressed", BOOLEAN),
    Field("image", OCTETS),
    Field("fail behaviour", FAIL_BEHAVIOUR),
    Field("cpuid", INTEGER),
    Field("memory", INTEGER),
    Field("blocks", Explicit(0, SetOf("blocks", UTF8)), optional=True),
]


def _v1(
    typ: m.Typ,
    compressed: bool,
    image: bytes,
    fail: m.FailBehaviour,
    cpuid: int,
    memory: int,
    blocks: frozenset[str] | None,
    bridges: frozenset[str] | None,
    argv: tuple[str, ...] | None,
) -> Listed:
    return _old(
        typ,
        compressed,
        image,
        fail,
        cpuid,
        memory,
        tuple(m.BlockDevice(b) for b in _utf8_set("blocks", blocks)),
        tuple(m.NetIf(b) for b in _utf8_set("bridges", bridges)),
        argv,
    )


UNIKERNEL_CONFIG_V1: Codec[Listed] = Sequence_(
    "unikernel config v1",
    [
        *_V1_HEAD,
        Field("bridges", Explicit(1, SetOf("bridges", UTF8)), optional=True),
        Field("arguments", ARGV, optional=True),
    ],
    _v1,
    _never_written,
)

V2_BRIDGE: Codec[m.NetIf] = Sequence_(
    "bridge",
    [Field("netif", UTF8), Field("bridge", UTF8, optional=True)],
    m.NetIf,
    _never_written,
)


def _v2(
    typ: m.Typ,
    compressed: bool,
    image: bytes,
    fail: m.FailBehaviour,
    cpuid: int,
    memory: int,
    blocks: frozenset[str] | None,
    bridges: tuple[m.NetIf, ...] | None,
    argv: tuple[str, ...] | None,
) -> Listed:
    return _old(
        typ,
        compressed,
        image,
        fail,
        cpuid,
        memory,
        tuple(m.BlockDevice(b) for b in _utf8_set("blocks", blocks)),
        _present("bridges", bridges),
        argv,
    )


UNIKERNEL_CONFIG_V2: Codec[Listed] = Sequence_(
    "unikernel config v2",
    [
        *_V1_HEAD,
        Field("bridges", Explicit(1, SequenceOf("bridges", V2_BRIDGE)), optional=True),
        Field("arguments", ARGV, optional=True),
    ],
    _v2,
    _never_written,
)

# -- tries and the layouts ----------------------------------------------------------


def _trie(label: str, value: Codec[Any]) -> Codec[Entries]:
    entry: Codec[tuple[Name, Any]] = Sequence_(
        f"{label} entry",
        [Field("name", NAME), Field("value", value)],
        lambda name, v: (name, v),
        lambda pair: pair,
    )
    return SequenceOf(label, entry)


def _trie_key(entry: tuple[Name, Any]) -> tuple[str, ...]:
    return entry[0].key


def _in_trie_order(what: str, entries: Entries) -> Entries:
    """``Vmm_trie.all`` of the trie built from *entries*: pre-order, children by label.

    albatross asserts that no name is inserted twice; two spellings of one node
    (``alice:`` and ``:alice``) count as the same name.
    """
    seen: dict[tuple[str, ...], Name] = {}
    for name, _ in entries:
        first = seen.get(name.key)
        if first == name:
            raise ParseError(f"the {what} name {name} appears twice")
        if first is not None:
            raise ParseError(f"the {what} names {first} and {name} are one trie node")
        seen[name.key] = name
    return tuple(sorted(entries, key=_trie_key))


def _state(layout: int, unikernels: Entries, policies: Entries) -> State:
    return State(
        tuple(StoredUnikernel(n, *listed) for n, listed in _in_trie_order("unikernel", unikernels)),
        _in_trie_order("policy", policies),
        layout,
    )


def _with_policies(label: str, config: Codec[Listed]) -> Codec[tuple[Entries, Entries]]:
    return Sequence_(
        label,
        [
            Field("unikernels", _trie("unikernels", config)),
            Field("policies", _trie("policies", POLICY)),
        ],
        lambda unikernels, policies: (unikernels, policies),
        lambda pair: pair,
    )


def _unikernels_only(n: int, name: str, config: Codec[Listed]) -> Alt[State]:
    return Alt(n, name, _trie("unikernels", config), lambda u: _state(n, u, ()), _never)


def _both(n: int, name: str, layout: Codec[tuple[Entries, Entries]]) -> Alt[State]:
    return Alt(n, name, layout, lambda pair: _state(n, *pair), _never)


#: The layout albatross 2.7 writes (``[6]``), shared by the reader and :func:`encode_state`.
CURRENT: Codec[tuple[Entries, Entries]] = _with_policies("state", _listing(UNIKERNEL_CONFIG))

STATE: Codec[State] = Choice(
    "state",
    [
        _unikernels_only(0, "unikernels (v1 configs)", UNIKERNEL_CONFIG_V1),
        _unikernels_only(1, "unikernels (v0 configs)", UNIKERNEL_CONFIG_V0),
        _unikernels_only(2, "unikernels (v2 configs)", UNIKERNEL_CONFIG_V2),
        _unikernels_only(3, "unikernels (v3 configs)", _listing(UNIKERNEL_CONFIG_V3)),
        _both(
            4,
            "unikernels and policies (v3 configs)",
            _with_policies("state v3", _listing(UNIKERNEL_CONFIG_V3)),
        ),
        _both(
            5,
            "unikernels and policies (v4 configs)",
            _with_policies("state v4", _listing(UNIKERNEL_CONFIG_V4)),
        ),
        _both(CURRENT_LAYOUT, "unikernels and policies", CURRENT),
    ],
    removed={7: "is the unfinished 'NYI' layout, which albatross 2.7.2 cannot read either"},
)

_WRITER: Codec[tuple[Entries, Entries]] = Explicit(CURRENT_LAYOUT, CURRENT)


def decode_state(data: bytes | memoryview) -> State:
    """Read a state file of any layout albatross 2.7.2 reads; raises only :class:`ParseError`."""
    if not data:
        raise ParseError("state file: empty")
    try:
        return STATE.decode(data)
    except ParseError as e:
        raise e.within("state file") from None


def encode_state(
    unikernels: Iterable[tuple[Name, m.UnikernelConfig]],
    policies: Iterable[tuple[Name, Policy]],
) -> bytes:
    """The state file albatrossd 2.7 writes (``[6]``), entries in trie order."""
    listed = sorted(((n, _in_der_order(c)) for n, c in unikernels), key=_trie_key)
    return _WRITER.encode((tuple(listed), tuple(sorted(policies, key=_trie_key))))
