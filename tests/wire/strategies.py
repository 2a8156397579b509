"""Hypothesis strategies for every albatross wire value."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import strategies as st

from core.wire import messages as m
from core.wire.der import INT_MAX, INT_MIN
from core.wire.names import Name
from core.wire.policy import Policy

ints = st.integers(INT_MIN, INT_MAX)
small = st.integers(-5, 300)
int64s = st.integers(-(1 << 63), (1 << 63) - 1)
int32s = st.integers(-(1 << 31), (1 << 31) - 1)
# UTF8String content is never validated by albatross: any bytes, kept via surrogateescape.
texts = st.binary(max_size=20).map(lambda b: b.decode("utf-8", "surrogateescape"))
octets = st.binary(max_size=64)
macs = st.binary(min_size=6, max_size=6)
times = st.builds(
    lambda d, ms: d.replace(microsecond=ms * 1000),
    st.datetimes(
        min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
    ),
    st.integers(0, 999),
)

_label_chars = "abcdefghijklmnopqrstuvwxyz0123456789.-"
labels = st.text(_label_chars, min_size=1, max_size=12).filter(
    lambda s: not s.startswith("-")
) | st.just("a" * 63)
names = st.builds(Name, st.lists(labels, max_size=3).map(tuple), st.none() | labels)
cpusets = st.frozensets(ints, max_size=4)

policies = st.builds(
    Policy,
    unikernels=ints,
    cpuids=cpusets,
    memory=ints,
    block=st.none() | ints,
    bridges=st.frozensets(texts, max_size=3),
)

fail_behaviours = st.one_of(st.just(m.Quit()), st.builds(m.Restart, cpusets))
block_devices = st.builds(m.BlockDevice, texts, st.none() | texts, st.none() | ints)
netifs = st.builds(m.NetIf, texts, st.none() | texts, st.none() | macs)
argvs = st.none() | st.lists(texts, max_size=3).map(tuple)


def _config(variant: m.ConfigVariant) -> st.SearchStrategy[m.UnikernelConfig]:
    one_cpu = st.integers(INT_MIN, INT_MAX).map(lambda c: frozenset({c}))
    return st.builds(
        m.UnikernelConfig,
        image=octets,
        memory=ints,
        cpuids=cpusets if variant is m.ConfigVariant.CURRENT else one_cpu,
        compressed=st.booleans(),
        typ=st.sampled_from(m.Typ),
        fail_behaviour=fail_behaviours,
        startup=st.none() if variant is m.ConfigVariant.V3 else st.none() | ints,
        add_name=st.just(True) if variant is m.ConfigVariant.V3 else st.booleans(),
        blocks=st.frozensets(block_devices, max_size=2),
        bridges=st.frozensets(netifs, max_size=2),
        argv=argvs,
        numcpus=st.none() | ints if variant is m.ConfigVariant.CURRENT else st.just(1),
        linux_boot_partition=st.none() | texts if variant is m.ConfigVariant.CURRENT else st.none(),
    )


#: Current-layout unikernel configurations (create [20], the state file).
configs = _config(m.ConfigVariant.CURRENT)


def _arguments(variant: m.ArgsVariant) -> st.SearchStrategy[m.UnikernelArguments]:
    one_cpu = st.integers(INT_MIN, INT_MAX).map(lambda c: frozenset({c}))
    current = variant is m.ArgsVariant.CURRENT
    return st.builds(
        m.UnikernelArguments,
        memory=ints,
        cpuids=cpusets if current else one_cpu,
        fail_behaviour=fail_behaviours,
        startup=st.none() if variant is m.ArgsVariant.V0 else st.none() | ints,
        add_name=st.just(True) if variant is m.ArgsVariant.V0 else st.booleans(),
        blocks=st.frozensets(block_devices, max_size=2),
        bridges=st.frozensets(netifs, max_size=2),
        argv=argvs,
        numcpus=st.none() | ints if current else st.just(1),
        linux_boot_partition=st.none() | texts if current else st.none(),
    )


commands: st.SearchStrategy[m.Command] = st.one_of(
    st.builds(m.ConsoleAdd, ints),
    st.builds(lambda t: m.ConsoleSubscribe(since=t), times),
    st.builds(lambda n: m.ConsoleSubscribe(count=n), ints),
    st.just(m.ConsoleListInactive()),
    st.builds(m.StatsAdd, texts, ints, st.lists(st.tuples(texts, texts), max_size=2).map(tuple)),
    st.sampled_from([m.StatsRemove(), m.StatsSubscribe(), m.StatsInitial()]),
    st.builds(m.UnikernelInfo, st.sampled_from(m.InfoVariant)),
    *(st.builds(m.UnikernelCreate, _config(v), st.booleans(), st.just(v)) for v in m.ConfigVariant),
    st.just(m.UnikernelDestroy()),
    st.builds(m.UnikernelGet, ints),
    st.just(m.UnikernelRestart()),
    *(st.builds(m.UnikernelRestart, _arguments(v), st.just(v)) for v in m.ArgsVariant),
    st.sampled_from([m.PolicyInfo(), m.PolicyRemove()]),
    st.builds(m.PolicyAdd, policies),
    st.sampled_from([m.BlockInfo(), m.BlockRemove()]),
    st.builds(m.BlockAdd, ints),
    st.builds(m.BlockAddOld, ints, st.booleans(), st.none() | octets),
    st.builds(m.BlockSetOld, st.booleans(), octets),
    st.builds(m.BlockDumpOld, ints),
    st.builds(m.BlockDump, ints),
    st.builds(m.BlockSet, st.booleans()),
)


def _info_record(variant: m.InfoVariant) -> st.SearchStrategy[m.UnikernelInfoRecord]:
    current = variant is m.InfoVariant.CURRENT
    one_cpu = st.integers(INT_MIN, INT_MAX).map(lambda c: frozenset({c}))
    return st.builds(
        m.UnikernelInfoRecord,
        typ=st.sampled_from(m.Typ),
        fail_behaviour=fail_behaviours,
        cpuids=cpusets if current else one_cpu,
        memory=ints,
        digest=octets,
        startup=st.none() if variant is m.InfoVariant.V4 else st.none() | ints,
        blocks=st.frozensets(st.builds(m.BlockInfoRecord, texts, texts, ints, ints), max_size=2),
        bridges=st.frozensets(st.builds(m.NetInfoRecord, texts, texts, macs), max_size=2),
        argv=argvs,
        started=st.none() | times,
        numcpus=st.none() | ints if current else st.just(1),
        linux_boot_partition=st.none() | texts if current else st.none(),
    )


successes: st.SearchStrategy[m.Success] = st.one_of(
    st.just(m.Empty()),
    st.builds(m.StringReply, texts),
    st.builds(m.PolicyList, st.lists(st.tuples(names, policies), max_size=3).map(tuple)),
    st.builds(
        m.BlockDeviceList,
        st.lists(st.builds(m.BlockDeviceEntry, names, ints, st.booleans()), max_size=3).map(tuple),
    ),
    st.builds(m.UnikernelImage, st.booleans(), octets),
    st.builds(m.OldBlockDeviceImage, st.booleans(), octets),
    *(
        st.builds(
            m.UnikernelInfoList,
            st.lists(st.tuples(names, _info_record(v)), max_size=2).map(tuple),
            st.just(v),
        )
        for v in m.InfoVariant
    ),
    st.builds(m.BlockDeviceImage, st.booleans()),
    st.builds(m.ConsoleList, st.lists(names, max_size=3).map(tuple)),
)

timevals = st.builds(m.Timeval, int64s, ints)
rusages = st.builds(m.Rusage, timevals, timevals, *([int64s] * 14))
ifdatas = st.builds(m.Ifdata, texts, *([int32s] * 5), *([int64s] * 12))
kinfos = st.builds(m.KinfoMem, *([int64s] * 6), ints, timevals)

data: st.SearchStrategy[m.Data] = st.one_of(
    st.builds(
        m.StatsData,
        rusages,
        st.lists(ifdatas, max_size=2).map(tuple),
        st.none() | st.lists(st.tuples(texts, int64s), max_size=2).map(tuple),
        st.none() | kinfos,
    ),
    st.builds(m.ConsoleData, times, texts),
    st.builds(m.BlockData, st.none() | octets),
)

payloads: st.SearchStrategy[m.Payload] = st.one_of(
    commands, successes, st.builds(m.Failure, texts), data
)

messages = st.builds(m.Message, st.builds(m.Header, names, int64s, st.just(m.VERSION)), payloads)
