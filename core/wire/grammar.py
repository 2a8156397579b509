"""The albatross 2.7 wire grammar (protocol version 5), declared once.

This module is the ASN.1 module of ``src/vmm_asn.ml`` written with the
combinators of :mod:`core.wire.der`, mapping each element to the typed
values of :mod:`core.wire.messages`.  Alternative numbers, field order
and optionality follow ``../shared/spec/wire.md`` §4-§10 (checked against the
vectors).  Nothing else in the project knows a tag number, except
:mod:`core.wire.state`, which declares albatross's state file with
these building blocks.

Public entry points: :func:`encode_message` / :func:`decode_message` for a
frame body, :func:`encode_extension` / :func:`decode_extension` for the value
of the certificate extension (OID 1.3.6.1.4.1.49836.42).
"""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise
from typing import Any

from core.errors import ParseError, UsageError
from core.wire import messages as m
from core.wire.der import (
    BOOLEAN,
    INT32,
    INT64,
    INTEGER,
    MAC,
    NO,
    NULL,
    OCTETS,
    TIME,
    UTF8,
    Alt,
    Choice,
    Codec,
    Field,
    Mapped,
    Sequence_,
    SequenceOf,
    SetOf,
    context_tag,
    when,
)
from core.wire.der import Explicit as X
from core.wire.names import Name
from core.wire.policy import Policy

__all__ = [
    "COMMAND",
    "MESSAGE",
    "POLICY",
    "decode_extension",
    "decode_message",
    "encode_extension",
    "encode_message",
]

NAME: Codec[Name] = Mapped(UTF8, str, Name.parse)


def _opt_set(label: str, value: frozenset[Any] | None) -> frozenset[Any]:
    """An OPTIONAL SET OF albatross omits when empty: absent -> empty; present-empty is refused."""
    if value is None:
        return frozenset()
    if not value:
        raise ParseError(f"{label}: present but empty (albatross omits an empty set)")
    return value


def _set_or_none(value: frozenset[Any]) -> frozenset[Any] | None:
    return value or None


def _tuple_or_none(value: tuple[str, ...] | None) -> tuple[str, ...] | None:
    return value


def _one_cpuid(cpuids: frozenset[int], what: str) -> int:
    if len(cpuids) != 1:
        raise UsageError(f"{what} carries exactly one CPU id, not {len(cpuids)}")
    return next(iter(cpuids))


# -- building blocks ------------------------------------------------------

TYP: Codec[m.Typ] = Choice(
    "typ",
    [
        Alt(0, "solo5", NULL, lambda _: m.Typ.SOLO5, when(m.Typ, check=lambda t: t is m.Typ.SOLO5)),
        Alt(1, "bhyve", NULL, lambda _: m.Typ.BHYVE, when(m.Typ, check=lambda t: t is m.Typ.BHYVE)),
    ],
)

INT_SET: Codec[frozenset[int]] = SetOf("integer set", INTEGER)

FAIL_BEHAVIOUR: Codec[m.FailBehaviour] = Choice(
    "fail behaviour",
    [
        Alt(0, "quit", NULL, lambda _: m.Quit(), when(m.Quit)),
        Alt(1, "restart", INT_SET, m.Restart, when(m.Restart, get=lambda r: r.exit_codes)),
    ],
)

BLOCK_DEVICE: Codec[m.BlockDevice] = Sequence_(
    "block device",
    [
        Field("name", UTF8),
        Field("device", UTF8, optional=True),
        Field("sector size", INTEGER, optional=True),
    ],
    m.BlockDevice,
    lambda b: (b.name, b.device, b.sector_size),
)

NET_IF: Codec[m.NetIf] = Sequence_(
    "network interface",
    [Field("name", UTF8), Field("bridge", UTF8, optional=True), Field("mac", MAC, optional=True)],
    m.NetIf,
    lambda n: (n.name, n.bridge, n.mac),
)

BLOCKS = X(0, SetOf("block devices", BLOCK_DEVICE))
BRIDGES = X(1, SetOf("network interfaces", NET_IF))
ARGV = X(2, SequenceOf("arguments", UTF8))

# -- unikernel configuration ----------------------------------------------


def _config(
    typ: m.Typ,
    compressed: bool,
    image: bytes,
    startup: int | None,
    add_name: bool,
    fail: m.FailBehaviour,
    cpuids: frozenset[int],
    memory: int,
    blocks: frozenset[m.BlockDevice] | None,
    bridges: frozenset[m.NetIf] | None,
    argv: tuple[str, ...] | None,
    numcpus: int | None = 1,
    lbp: str | None = None,
) -> m.UnikernelConfig:
    return m.UnikernelConfig(
        image=image,
        memory=memory,
        cpuids=cpuids,
        compressed=compressed,
        typ=typ,
        fail_behaviour=fail,
        startup=startup,
        add_name=add_name,
        blocks=_opt_set("blocks", blocks),
        bridges=_opt_set("bridges", bridges),
        argv=argv,
        numcpus=numcpus,
        linux_boot_partition=lbp,
    )


UNIKERNEL_CONFIG: Codec[m.UnikernelConfig] = Sequence_(
    "unikernel config",
    [
        Field("typ", TYP),
        Field("compressed", BOOLEAN),
        Field("image", OCTETS),
        Field("startup", INTEGER, optional=True),
        Field("add name", BOOLEAN),
        Field("fail behaviour", FAIL_BEHAVIOUR),
        Field("cpuids", INT_SET),
        Field("memory", INTEGER),
        Field("blocks", BLOCKS, optional=True),
        Field("bridges", BRIDGES, optional=True),
        Field("arguments", ARGV, optional=True),
        Field("cpus", X(3, INTEGER), optional=True),
        Field("linux boot partition", X(4, UTF8), optional=True),
    ],
    _config,
    lambda c: (
        c.typ,
        c.compressed,
        c.image,
        c.startup,
        c.add_name,
        c.fail_behaviour,
        c.cpuids,
        c.memory,
        _set_or_none(c.blocks),
        _set_or_none(c.bridges),
        c.argv,
        c.numcpus,
        c.linux_boot_partition,
    ),
)


def _v4_parts(c: m.UnikernelConfig) -> tuple[Any, ...]:
    if c.numcpus not in (1, None) or c.linux_boot_partition is not None:
        raise UsageError("an old (v4) config has no cpus or linux boot partition")
    return (
        c.typ,
        c.compressed,
        c.image,
        c.startup,
        c.add_name,
        c.fail_behaviour,
        _one_cpuid(c.cpuids, "an old (v4) config"),
        c.memory,
        _set_or_none(c.blocks),
        _set_or_none(c.bridges),
        c.argv,
    )


UNIKERNEL_CONFIG_V4: Codec[m.UnikernelConfig] = Sequence_(
    "unikernel config v4",
    [
        Field("typ", TYP),
        Field("compressed", BOOLEAN),
        Field("image", OCTETS),
        Field("startup", INTEGER, optional=True),
        Field("add name", BOOLEAN),
        Field("fail behaviour", FAIL_BEHAVIOUR),
        Field("cpuid", INTEGER),
        Field("memory", INTEGER),
        Field("blocks", BLOCKS, optional=True),
        Field("bridges", BRIDGES, optional=True),
        Field("arguments", ARGV, optional=True),
    ],
    lambda typ, comp, img, startup, add_name, fail, cpuid, mem, blocks, bridges, argv: _config(
        typ, comp, img, startup, add_name, fail, frozenset({cpuid}), mem, blocks, bridges, argv
    ),
    _v4_parts,
)


def _v3_parts(c: m.UnikernelConfig) -> tuple[Any, ...]:
    if c.startup is not None or not c.add_name:
        raise UsageError("an old (v3) config has no startup and always adds the name")
    p = _v4_parts(c)
    return (p[0], p[1], p[2], p[5], p[6], p[7], p[8], p[9], p[10])


UNIKERNEL_CONFIG_V3: Codec[m.UnikernelConfig] = Sequence_(
    "unikernel config v3",
    [
        Field("typ", TYP),
        Field("compressed", BOOLEAN),
        Field("image", OCTETS),
        Field("fail behaviour", FAIL_BEHAVIOUR),
        Field("cpuid", INTEGER),
        Field("memory", INTEGER),
        Field("blocks", BLOCKS, optional=True),
        Field("bridges", BRIDGES, optional=True),
        Field("arguments", ARGV, optional=True),
    ],
    lambda typ, comp, img, fail, cpuid, mem, blocks, bridges, argv: _config(
        typ, comp, img, None, True, fail, frozenset({cpuid}), mem, blocks, bridges, argv
    ),
    _v3_parts,
)

# -- restart arguments ----------------------------------------------------


def _args(
    fail: m.FailBehaviour,
    startup: int | None,
    add_name: bool,
    cpuids: frozenset[int],
    memory: int,
    blocks: frozenset[m.BlockDevice] | None,
    bridges: frozenset[m.NetIf] | None,
    argv: tuple[str, ...] | None,
    numcpus: int | None = 1,
    lbp: str | None = None,
) -> m.UnikernelArguments:
    return m.UnikernelArguments(
        memory=memory,
        cpuids=cpuids,
        fail_behaviour=fail,
        startup=startup,
        add_name=add_name,
        blocks=_opt_set("blocks", blocks),
        bridges=_opt_set("bridges", bridges),
        argv=argv,
        numcpus=numcpus,
        linux_boot_partition=lbp,
    )


UNIKERNEL_ARGUMENTS: Codec[m.UnikernelArguments] = Sequence_(
    "unikernel arguments",
    [
        Field("fail behaviour", FAIL_BEHAVIOUR),
        Field("startup", INTEGER, optional=True),
        Field("add name", BOOLEAN),
        Field("cpuids", INT_SET),
        Field("memory", INTEGER),
        Field("blocks", BLOCKS, optional=True),
        Field("bridges", BRIDGES, optional=True),
        Field("arguments", ARGV, optional=True),
        Field("cpus", X(3, INTEGER), optional=True),
        Field("linux boot partition", X(4, UTF8), optional=True),
    ],
    _args,
    lambda a: (
        a.fail_behaviour,
        a.startup,
        a.add_name,
        a.cpuids,
        a.memory,
        _set_or_none(a.blocks),
        _set_or_none(a.bridges),
        a.argv,
        a.numcpus,
        a.linux_boot_partition,
    ),
)


def _args_v1_parts(a: m.UnikernelArguments) -> tuple[Any, ...]:
    if a.numcpus not in (1, None) or a.linux_boot_partition is not None:
        raise UsageError("old (v1) arguments have no cpus or linux boot partition")
    return (
        a.fail_behaviour,
        a.startup,
        a.add_name,
        _one_cpuid(a.cpuids, "old (v1) arguments"),
        a.memory,
        _set_or_none(a.blocks),
        _set_or_none(a.bridges),
        a.argv,
    )


UNIKERNEL_ARGUMENTS_V1: Codec[m.UnikernelArguments] = Sequence_(
    "unikernel arguments v1",
    [
        Field("fail behaviour", FAIL_BEHAVIOUR),
        Field("startup", INTEGER, optional=True),
        Field("add name", BOOLEAN),
        Field("cpuid", INTEGER),
        Field("memory", INTEGER),
        Field("blocks", BLOCKS, optional=True),
        Field("bridges", BRIDGES, optional=True),
        Field("arguments", ARGV, optional=True),
    ],
    lambda fail, startup, add_name, cpuid, mem, blocks, bridges, argv: _args(
        fail, startup, add_name, frozenset({cpuid}), mem, blocks, bridges, argv
    ),
    _args_v1_parts,
)


def _args_v0_parts(a: m.UnikernelArguments) -> tuple[Any, ...]:
    if a.startup is not None or not a.add_name:
        raise UsageError("old (v0) arguments have no startup and always add the name")
    p = _args_v1_parts(a)
    return (p[0], p[3], p[4], p[5], p[6], p[7])


UNIKERNEL_ARGUMENTS_V0: Codec[m.UnikernelArguments] = Sequence_(
    "unikernel arguments v0",
    [
        Field("fail behaviour", FAIL_BEHAVIOUR),
        Field("cpuid", INTEGER),
        Field("memory", INTEGER),
        Field("blocks", BLOCKS, optional=True),
        Field("bridges", BRIDGES, optional=True),
        Field("arguments", ARGV, optional=True),
    ],
    lambda fail, cpuid, mem, blocks, bridges, argv: _args(
        fail, None, True, frozenset({cpuid}), mem, blocks, bridges, argv
    ),
    _args_v0_parts,
)


def _restart_take(variant: m.ArgsVariant) -> Any:
    return when(
        m.UnikernelRestart,
        check=lambda r: r.arguments is not None and r.variant is variant,
        get=lambda r: r.arguments,
    )


RESTART: Codec[m.UnikernelRestart] = Choice(
    "restart",
    [
        Alt(
            0,
            "no arguments",
            NULL,
            lambda _: m.UnikernelRestart(),
            when(m.UnikernelRestart, check=lambda r: r.arguments is None),
        ),
        Alt(
            1,
            "arguments v0",
            UNIKERNEL_ARGUMENTS_V0,
            lambda a: m.UnikernelRestart(a, m.ArgsVariant.V0),
            _restart_take(m.ArgsVariant.V0),
        ),
        Alt(
            2,
            "arguments v1",
            UNIKERNEL_ARGUMENTS_V1,
            lambda a: m.UnikernelRestart(a, m.ArgsVariant.V1),
            _restart_take(m.ArgsVariant.V1),
        ),
        Alt(
            3,
            "arguments",
            UNIKERNEL_ARGUMENTS,
            lambda a: m.UnikernelRestart(a, m.ArgsVariant.CURRENT),
            _restart_take(m.ArgsVariant.CURRENT),
        ),
    ],
)

# -- commands -------------------------------------------------------------


def _create(
    n: int, name: str, codec: Codec[m.UnikernelConfig], force: bool, variant: m.ConfigVariant
) -> Alt[Any]:
    return Alt(
        n,
        name,
        codec,
        lambda c: m.UnikernelCreate(c, force, variant),
        when(
            m.UnikernelCreate,
            check=lambda u: u.force is force and u.variant is variant,
            get=lambda u: u.config,
        ),
    )


def _info(n: int, name: str, variant: m.InfoVariant) -> Alt[Any]:
    return Alt(
        n,
        name,
        NULL,
        lambda _: m.UnikernelInfo(variant),
        when(m.UnikernelInfo, check=lambda i: i.variant is variant),
    )


def _unit(n: int, name: str, cls: type[Any]) -> Alt[Any]:
    """An alternative whose content is NULL and whose value is a field-less class."""
    return Alt(n, name, NULL, lambda _: cls(), when(cls))


def _one(n: int, name: str, codec: Codec[Any], cls: type[Any], attr: str) -> Alt[Any]:
    """An alternative whose content is one field of a one-field class."""
    return Alt(n, name, codec, cls, when(cls, get=lambda v: getattr(v, attr)))


_REMOVED_UNIKERNEL = {
    n: "was removed from albatross (old command)" for n in (0, 1, 2, 4, 5, 6, 7, 8, 12, 13)
}

UNIKERNEL_COMMAND: Codec[m.UnikernelCommand] = Choice(
    "unikernel command",
    [
        _unit(3, "destroy", m.UnikernelDestroy),
        _create(9, "create (v3)", UNIKERNEL_CONFIG_V3, False, m.ConfigVariant.V3),
        _create(10, "force create (v3)", UNIKERNEL_CONFIG_V3, True, m.ConfigVariant.V3),
        _one(11, "get", INTEGER, m.UnikernelGet, "level"),
        Alt(14, "restart", RESTART, lambda r: r, when(m.UnikernelRestart, get=lambda r: r)),
        _info(15, "info (v4)", m.InfoVariant.V4),
        _create(16, "create (v4)", UNIKERNEL_CONFIG_V4, False, m.ConfigVariant.V4),
        _create(17, "force create (v4)", UNIKERNEL_CONFIG_V4, True, m.ConfigVariant.V4),
        _info(18, "info (v5)", m.InfoVariant.V5),
        _info(19, "info", m.InfoVariant.CURRENT),
        _create(20, "create", UNIKERNEL_CONFIG, False, m.ConfigVariant.CURRENT),
        _create(21, "force create", UNIKERNEL_CONFIG, True, m.ConfigVariant.CURRENT),
    ],
    removed=_REMOVED_UNIKERNEL,
)

SUBSCRIBE: Codec[m.ConsoleSubscribe] = Choice(
    "subscribe",
    [
        Alt(
            0,
            "since",
            TIME,
            lambda t: m.ConsoleSubscribe(since=t),
            when(m.ConsoleSubscribe, check=lambda s: s.since is not None, get=lambda s: s.since),
        ),
        Alt(
            1,
            "count",
            INTEGER,
            lambda n: m.ConsoleSubscribe(count=n),
            when(m.ConsoleSubscribe, check=lambda s: s.count is not None, get=lambda s: s.count),
        ),
    ],
)

CONSOLE_COMMAND: Codec[m.ConsoleCommand] = Choice(
    "console command",
    [
        _one(0, "add", INTEGER, m.ConsoleAdd, "limit"),
        Alt(2, "subscribe", SUBSCRIBE, lambda s: s, when(m.ConsoleSubscribe, get=lambda s: s)),
        _unit(3, "list inactive", m.ConsoleListInactive),
    ],
    removed={1: "was removed from albatross (old subscribe)"},
)

STATS_ADD: Codec[m.StatsAdd] = Sequence_(
    "stats add",
    [
        Field("vmm device", UTF8),
        Field("pid", INTEGER),
        Field(
            "network",
            SequenceOf(
                "taps",
                Sequence_(
                    "tap",
                    [Field("bridge", UTF8), Field("tap", UTF8)],
                    lambda b, t: (b, t),
                    lambda p: p,
                ),
            ),
        ),
    ],
    m.StatsAdd,
    lambda s: (s.vmmdev, s.pid, s.taps),
)

STATS_COMMAND: Codec[m.StatsCommand] = Choice(
    "stats command",
    [
        Alt(0, "add", STATS_ADD, lambda s: s, when(m.StatsAdd, get=lambda s: s)),
        _unit(1, "remove", m.StatsRemove),
        _unit(2, "subscribe", m.StatsSubscribe),
        _unit(3, "initial", m.StatsInitial),
    ],
)


def _sorted_ints(label: str, values: tuple[int, ...]) -> frozenset[int]:
    if any(a >= b for a, b in pairwise(values)):
        raise ParseError(f"{label}: not in ascending order or duplicated")
    return frozenset(values)


def _sorted_texts(label: str, values: tuple[str, ...]) -> frozenset[str]:
    raw = [v.encode("utf-8", "surrogateescape") for v in values]
    if any(a >= b for a, b in pairwise(raw)):
        raise ParseError(f"{label}: not in ascending order or duplicated")
    return frozenset(values)


def _policy(
    cpuids: tuple[int, ...],
    unikernels: int,
    memory: int,
    block: int | None,
    bridges: tuple[str, ...],
) -> Policy:
    return Policy(
        unikernels=unikernels,
        cpuids=_sorted_ints("cpuids", cpuids),
        memory=memory,
        block=block,
        bridges=_sorted_texts("bridges", bridges),
    )


POLICY: Codec[Policy] = Sequence_(
    "policy",
    [
        Field("cpuids", SequenceOf("cpuids", INTEGER)),
        Field("unikernels", INTEGER),
        Field("memory", INTEGER),
        Field("block", INTEGER, optional=True),
        Field("bridges", SequenceOf("bridges", UTF8)),
    ],
    _policy,
    lambda p: (
        tuple(sorted(p.cpuids)),
        p.unikernels,
        p.memory,
        p.block,
        tuple(sorted(p.bridges, key=lambda b: b.encode("utf-8", "surrogateescape"))),
    ),
)

POLICY_COMMAND: Codec[m.PolicyCommand] = Choice(
    "policy command",
    [
        _unit(0, "info", m.PolicyInfo),
        _one(1, "add", POLICY, m.PolicyAdd, "policy"),
        _unit(2, "remove", m.PolicyRemove),
    ],
)

BLOCK_COMMAND: Codec[m.BlockCommand] = Choice(
    "block command",
    [
        _unit(0, "info", m.BlockInfo),
        _one(1, "add", INTEGER, m.BlockAdd, "size"),
        _unit(2, "remove", m.BlockRemove),
        Alt(
            3,
            "add (old)",
            Sequence_(
                "old block add",
                [
                    Field("size", INTEGER),
                    Field("compressed", BOOLEAN),
                    Field("data", OCTETS, optional=True),
                ],
                m.BlockAddOld,
                lambda b: (b.size, b.compressed, b.data),
            ),
            lambda b: b,
            when(m.BlockAddOld, get=lambda b: b),
        ),
        Alt(
            4,
            "set (old)",
            Sequence_(
                "old block set",
                [Field("compressed", BOOLEAN), Field("data", OCTETS)],
                m.BlockSetOld,
                lambda b: (b.compressed, b.data),
            ),
            lambda b: b,
            when(m.BlockSetOld, get=lambda b: b),
        ),
        _one(5, "dump (old)", INTEGER, m.BlockDumpOld, "level"),
        _one(6, "dump", INTEGER, m.BlockDump, "level"),
        _one(7, "set", BOOLEAN, m.BlockSet, "compressed"),
    ],
)


def _group(n: int, name: str, codec: Codec[Any], classes: tuple[type[Any], ...]) -> Alt[Any]:
    return Alt(n, name, codec, lambda c: c, lambda v: v if isinstance(v, classes) else NO)


COMMAND: Codec[m.Command] = Choice(
    "command",
    [
        _group(0, "console", CONSOLE_COMMAND, m.CONSOLE_COMMANDS),
        _group(1, "stats", STATS_COMMAND, m.STATS_COMMANDS),
        _group(3, "unikernel", UNIKERNEL_COMMAND, m.UNIKERNEL_COMMANDS),
        _group(4, "policy", POLICY_COMMAND, m.POLICY_COMMANDS),
        _group(5, "block", BLOCK_COMMAND, m.BLOCK_COMMANDS),
    ],
    removed={2: "support for log was dropped"},
)

# -- success replies ------------------------------------------------------

BLOCK_INFO: Codec[m.BlockInfoRecord] = Sequence_(
    "block info",
    [
        Field("name", UTF8),
        Field("device", UTF8),
        Field("sector size", INTEGER),
        Field("size", INTEGER),
    ],
    m.BlockInfoRecord,
    lambda b: (b.name, b.device, b.sector_size, b.size),
)

NET_INFO: Codec[m.NetInfoRecord] = Sequence_(
    "net info",
    [Field("name", UTF8), Field("bridge", UTF8), Field("mac", MAC)],
    m.NetInfoRecord,
    lambda n: (n.name, n.bridge, n.mac),
)

INFO_BLOCKS = X(0, SetOf("block infos", BLOCK_INFO))
INFO_BRIDGES = X(1, SetOf("net infos", NET_INFO))


def _info_record(
    typ: m.Typ,
    startup: int | None,
    fail: m.FailBehaviour,
    cpuids: frozenset[int],
    memory: int,
    digest: bytes,
    blocks: frozenset[m.BlockInfoRecord] | None,
    bridges: frozenset[m.NetInfoRecord] | None,
    argv: tuple[str, ...] | None,
    started: datetime | None,
    numcpus: int | None = 1,
    lbp: str | None = None,
) -> m.UnikernelInfoRecord:
    return m.UnikernelInfoRecord(
        typ=typ,
        fail_behaviour=fail,
        cpuids=cpuids,
        memory=memory,
        digest=digest,
        startup=startup,
        blocks=_opt_set("blocks", blocks),
        bridges=_opt_set("bridges", bridges),
        argv=argv,
        started=started,
        numcpus=numcpus,
        linux_boot_partition=lbp,
    )


INFO_RECORD: Codec[m.UnikernelInfoRecord] = Sequence_(
    "unikernel info",
    [
        Field("typ", TYP),
        Field("startup", INTEGER, optional=True),
        Field("fail behaviour", FAIL_BEHAVIOUR),
        Field("cpuids", INT_SET),
        Field("memory", INTEGER),
        Field("digest", OCTETS),
        Field("blocks", INFO_BLOCKS, optional=True),
        Field("bridges", INFO_BRIDGES, optional=True),
        Field("arguments", ARGV, optional=True),
        Field("started", X(3, TIME), optional=True),
        Field("cpus", X(4, INTEGER), optional=True),
        Field("linux boot partition", X(5, UTF8), optional=True),
    ],
    _info_record,
    lambda r: (
        r.typ,
        r.startup,
        r.fail_behaviour,
        r.cpuids,
        r.memory,
        r.digest,
        _set_or_none(r.blocks),
        _set_or_none(r.bridges),
        r.argv,
        r.started,
        r.numcpus,
        r.linux_boot_partition,
    ),
)


def _old_info_parts(r: m.UnikernelInfoRecord, what: str) -> tuple[Any, ...]:
    if r.numcpus not in (1, None) or r.linux_boot_partition is not None:
        raise UsageError(f"{what} has no cpus or linux boot partition")
    return (
        r.typ,
        r.startup,
        r.fail_behaviour,
        _one_cpuid(r.cpuids, what),
        r.memory,
        r.digest,
        _set_or_none(r.blocks),
        _set_or_none(r.bridges),
        r.argv,
        r.started,
    )


INFO_RECORD_V5: Codec[m.UnikernelInfoRecord] = Sequence_(
    "unikernel info v5",
    [
        Field("typ", TYP),
        Field("startup", INTEGER, optional=True),
        Field("fail behaviour", FAIL_BEHAVIOUR),
        Field("cpuid", INTEGER),
        Field("memory", INTEGER),
        Field("digest", OCTETS),
        Field("blocks", INFO_BLOCKS, optional=True),
        Field("bridges", INFO_BRIDGES, optional=True),
        Field("arguments", ARGV, optional=True),
        Field("started", X(3, TIME), optional=True),
    ],
    lambda typ, startup, fail, cpuid, mem, digest, blocks, bridges, argv, started: _info_record(
        typ, startup, fail, frozenset({cpuid}), mem, digest, blocks, bridges, argv, started
    ),
    lambda r: _old_info_parts(r, "an old (v5) info record"),
)


def _v4_info_parts(r: m.UnikernelInfoRecord) -> tuple[Any, ...]:
    if r.startup is not None:
        raise UsageError("an old (v4) info record has no startup")
    p = _old_info_parts(r, "an old (v4) info record")
    return (p[0], *p[2:])


INFO_RECORD_V4: Codec[m.UnikernelInfoRecord] = Sequence_(
    "unikernel info v4",
    [
        Field("typ", TYP),
        Field("fail behaviour", FAIL_BEHAVIOUR),
        Field("cpuid", INTEGER),
        Field("memory", INTEGER),
        Field("digest", OCTETS),
        Field("blocks", INFO_BLOCKS, optional=True),
        Field("bridges", INFO_BRIDGES, optional=True),
        Field("arguments", ARGV, optional=True),
        Field("started", X(3, TIME), optional=True),
    ],
    lambda typ, fail, cpuid, mem, digest, blocks, bridges, argv, started: _info_record(
        typ, None, fail, frozenset({cpuid}), mem, digest, blocks, bridges, argv, started
    ),
    _v4_info_parts,
)


def _pair(label: str, codec: Codec[Any]) -> Codec[tuple[Name, Any]]:
    return Sequence_(
        label, [Field("name", NAME), Field("value", codec)], lambda n, v: (n, v), lambda p: p
    )


def _info_list(
    n: int, name: str, record: Codec[m.UnikernelInfoRecord], variant: m.InfoVariant
) -> Alt[Any]:
    return Alt(
        n,
        name,
        SequenceOf("unikernels", _pair("unikernel", record)),
        lambda entries: m.UnikernelInfoList(entries, variant),
        when(m.UnikernelInfoList, check=lambda i: i.variant is variant, get=lambda i: i.unikernels),
    )


def _image(n: int, name: str, cls: type[Any]) -> Alt[Any]:
    return Alt(
        n,
        name,
        Sequence_(
            name,
            [Field("compressed", BOOLEAN), Field("image", OCTETS)],
            cls,
            lambda i: (i.compressed, i.image),
        ),
        lambda i: i,
        when(cls, get=lambda i: i),
    )


BLOCK_ENTRY: Codec[m.BlockDeviceEntry] = Sequence_(
    "block device",
    [Field("name", NAME), Field("size", INTEGER), Field("active", BOOLEAN)],
    m.BlockDeviceEntry,
    lambda b: (b.name, b.size, b.active),
)

SUCCESS: Codec[m.Success] = Choice(
    "success",
    [
        _unit(0, "empty", m.Empty),
        _one(1, "string", UTF8, m.StringReply, "text"),
        _one(
            2,
            "policies",
            SequenceOf("policies", _pair("policy entry", POLICY)),
            m.PolicyList,
            "policies",
        ),
        _one(
            4,
            "block devices",
            SequenceOf("block devices", BLOCK_ENTRY),
            m.BlockDeviceList,
            "devices",
        ),
        _image(6, "unikernel image", m.UnikernelImage),
        _image(7, "old block device image", m.OldBlockDeviceImage),
        _info_list(9, "unikernel info (v4)", INFO_RECORD_V4, m.InfoVariant.V4),
        _one(10, "block device image", BOOLEAN, m.BlockDeviceImage, "compressed"),
        _info_list(11, "unikernel info (v5)", INFO_RECORD_V5, m.InfoVariant.V5),
        _one(12, "consoles", SequenceOf("consoles", NAME), m.ConsoleList, "consoles"),
        _info_list(13, "unikernel info", INFO_RECORD, m.InfoVariant.CURRENT),
    ],
    removed={n: "was removed from albatross (old reply)" for n in (3, 5, 8)},
)

# -- data -----------------------------------------------------------------

TIMEVAL: Codec[m.Timeval] = Sequence_(
    "timeval",
    [Field("seconds", INT64), Field("microseconds", INTEGER)],
    m.Timeval,
    lambda t: (t.seconds, t.microseconds),
)

_RUSAGE_COUNTERS = (
    "maxrss",
    "ixrss",
    "idrss",
    "isrss",
    "minflt",
    "majflt",
    "nswap",
    "inblock",
    "outblock",
    "msgsnd",
    "msgrcv",
    "nsignals",
    "nvcsw",
    "nivcsw",
)

RUSAGE: Codec[m.Rusage] = Sequence_(
    "rusage",
    [
        Field("utime", TIMEVAL),
        Field("stime", TIMEVAL),
        *(Field(n, INT64) for n in _RUSAGE_COUNTERS),
    ],
    m.Rusage,
    lambda r: (r.utime, r.stime, *(getattr(r, n) for n in _RUSAGE_COUNTERS)),
)

_KINFO_COUNTERS = ("vsize", "rss", "tsize", "dsize", "ssize", "runtime")

KINFO_MEM: Codec[m.KinfoMem] = Sequence_(
    "kinfo mem",
    [*(Field(n, INT64) for n in _KINFO_COUNTERS), Field("cow", INTEGER), Field("start", TIMEVAL)],
    m.KinfoMem,
    lambda k: (*(getattr(k, n) for n in _KINFO_COUNTERS), k.cow, k.start),
    tag=context_tag(1),  # [1] IMPLICIT SEQUENCE
)

_IF_INT32 = ("flags", "send_length", "max_send_length", "send_drops", "mtu")
_IF_INT64 = (
    "baudrate",
    "input_packets",
    "input_errors",
    "output_packets",
    "output_errors",
    "collisions",
    "input_bytes",
    "output_bytes",
    "input_mcast",
    "output_mcast",
    "input_dropped",
    "output_dropped",
)

IFDATA: Codec[m.Ifdata] = Sequence_(
    "ifdata",
    [
        Field("bridge", UTF8),
        *(Field(n, INT32) for n in _IF_INT32),
        *(Field(n, INT64) for n in _IF_INT64),
    ],
    m.Ifdata,
    lambda i: (i.bridge, *(getattr(i, n) for n in _IF_INT32 + _IF_INT64)),
)

STATS_DATA: Codec[m.StatsData] = Sequence_(
    "statistics",
    [
        Field("rusage", RUSAGE),
        Field("ifdata", SequenceOf("ifdata", IFDATA)),
        Field(
            "vmm stats",
            X(
                0,
                SequenceOf(
                    "vmm stats",
                    Sequence_(
                        "vmm stat",
                        [Field("key", UTF8), Field("value", INT64)],
                        lambda k, v: (k, v),
                        lambda p: p,
                    ),
                ),
            ),
            optional=True,
        ),
        Field("kinfo mem", KINFO_MEM, optional=True),
    ],
    m.StatsData,
    lambda s: (s.rusage, s.ifdata, s.vmm_stats, s.kinfo_mem),
)

CONSOLE_DATA: Codec[m.ConsoleData] = Sequence_(
    "console data",
    [Field("timestamp", TIME), Field("line", UTF8)],
    m.ConsoleData,
    lambda c: (c.timestamp, c.line),
)

BLOCK_DATA: Codec[m.BlockData] = Choice(
    "block data",
    [
        Alt(
            0,
            "some data",
            OCTETS,
            m.BlockData,
            when(m.BlockData, check=lambda b: b.data is not None, get=lambda b: b.data),
        ),
        Alt(
            1,
            "no data",
            NULL,
            lambda _: m.BlockData(None),
            when(m.BlockData, check=lambda b: b.data is None),
        ),
    ],
)

DATA: Codec[m.Data] = Choice(
    "data",
    [
        Alt(1, "statistics", STATS_DATA, lambda s: s, when(m.StatsData, get=lambda s: s)),
        Alt(3, "console", CONSOLE_DATA, lambda c: c, when(m.ConsoleData, get=lambda c: c)),
        Alt(4, "block", BLOCK_DATA, lambda b: b, when(m.BlockData, get=lambda b: b)),
    ],
    removed={0: "was removed from albatross (old console data)", 2: "support for log was dropped"},
)

# -- the whole message ----------------------------------------------------


def _header(version: int, sequence: int, name: Name) -> m.Header:
    if version != m.VERSION:
        raise ParseError(f"unknown version number 0x{version:X}")
    return m.Header(name=name, sequence=sequence, version=version)


HEADER: Codec[m.Header] = Sequence_(
    "header",
    [Field("version", INTEGER), Field("sequence", INT64), Field("name", NAME)],
    _header,
    lambda h: (h.version, h.sequence, h.name),
)

PAYLOAD: Codec[m.Payload] = Choice(
    "payload",
    [
        _group(
            0,
            "command",
            COMMAND,
            m.CONSOLE_COMMANDS
            + m.STATS_COMMANDS
            + m.UNIKERNEL_COMMANDS
            + m.POLICY_COMMANDS
            + m.BLOCK_COMMANDS,
        ),
        _group(1, "success", SUCCESS, m.SUCCESS_TYPES),
        _one(2, "failure", UTF8, m.Failure, "message"),
        _group(3, "data", DATA, m.DATA_TYPES),
    ],
)

MESSAGE: Codec[m.Message] = Sequence_(
    "wire",
    [Field("header", HEADER), Field("payload", PAYLOAD)],
    m.Message,
    lambda w: (w.header, w.payload),
)


def _extension(version: int, command: m.Command) -> m.Command:
    if version != m.VERSION:
        raise ParseError(f"unknown version number 0x{version:X}")
    return command


EXTENSION: Codec[m.Command] = Sequence_(
    "albatross extension",
    [Field("version", INTEGER), Field("command", COMMAND)],
    _extension,
    lambda c: (m.VERSION, c),
)


def encode_message(message: m.Message) -> bytes:
    """DER of one wire message (a frame body, without the length prefix)."""
    return MESSAGE.encode(message)


def decode_message(data: bytes | memoryview) -> m.Message:
    """Decode one wire message; raises only :class:`ParseError`."""
    return MESSAGE.decode(data)


def encode_extension(command: m.Command) -> bytes:
    """The extnValue of the albatross certificate extension for *command*."""
    return EXTENSION.encode(command)


def decode_extension(data: bytes | memoryview) -> m.Command:
    """Decode the albatross extension value of a certificate or CSR."""
    return EXTENSION.decode(data)
