"""albatrossd's command handling (vmm_vmmd.ml) as pure outcomes, synchronously."""

from __future__ import annotations

import hashlib
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.wire import (
    BlockAdd,
    BlockAddOld,
    BlockDevice,
    BlockDump,
    BlockInfo,
    BlockRemove,
    BlockSet,
    ConsoleAdd,
    Failure,
    Header,
    Name,
    NetIf,
    Policy,
    PolicyAdd,
    PolicyInfo,
    PolicyList,
    PolicyRemove,
    Quit,
    Restart,
    StatsInitial,
    StringReply,
    UnikernelArguments,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelGet,
    UnikernelImage,
    UnikernelInfo,
    UnikernelInfoList,
    UnikernelRestart,
)
from standin.errors import Refused
from standin.outcomes import (
    AddBlock,
    Create,
    DumpBlock,
    RemoveBlock,
    Reply,
    SetBlock,
    StatsChannel,
    Wait,
    WaitAndCreate,
)
from standin.resources import Unikernel
from standin.vmmd import MAX_IMAGE, Vmmd, bytes_of_mb, should_restart
from tests.standin.helpers import make_image

NOW = datetime(2026, 11, 27, tzinfo=UTC)
ALICE = Policy(2, frozenset({0}), 64, 100, frozenset({"service"}))


def handle(v: Vmmd[object], name: str, payload: object) -> object:
    return v.handle(Header(Name.parse(name)), payload)  # type: ignore[arg-type]


def start(v: Vmmd[object], name: str, config: UnikernelConfig) -> None:
    prepared = v.prepare(Name.parse(name), config)
    v.insert(Name.parse(name), Unikernel(config, prepared.digest, NOW, 42))


@pytest.fixture
def ticker(tmp_path: Path) -> bytes:
    return make_image(tmp_path, "ticker")


@pytest.fixture
def net_image(tmp_path: Path) -> bytes:
    return make_image(tmp_path, "net", "--net", "service0")


def test_policy_add_is_a_loop_reply_and_detects_no_change() -> None:
    v: Vmmd[object] = Vmmd()
    assert handle(v, "alice:", PolicyAdd(ALICE)) == Reply(StringReply("added policy"), True)
    assert v.dirty
    v.dirty = False
    assert handle(v, "alice:", PolicyAdd(ALICE)) == Reply(
        StringReply("no modification of policy"), True
    )
    assert not v.dirty
    # A label in the name is ignored: the policy goes to the path.
    assert handle(v, "alice:x", PolicyInfo()) == Reply(PolicyList(((Name(), ALICE),)))


def test_policy_failures_close_with_the_text() -> None:
    v: Vmmd[object] = Vmmd()
    handle(v, "alice:", PolicyAdd(ALICE))
    bigger = Policy(3, frozenset({0}), 64, 100, frozenset({"service"}))
    assert handle(v, "alice:bob:", PolicyAdd(bigger)) == Reply(
        Failure("policy above allows 2 unikernels, which is fewer than 3")
    )
    assert handle(v, "nobody:", PolicyRemove()) == Reply(Failure("unknown policy"))
    assert handle(v, "alice:", PolicyRemove()) == Reply(StringReply("removed policy"))


def test_policy_info_lists_relative_names_node_first_then_children_descending() -> None:
    v: Vmmd[object] = Vmmd()
    for path in ("alice:", "alice:bob:", "alice:carol:", "dave:"):
        handle(v, path, PolicyAdd(ALICE))
    reply = handle(v, "alice:", PolicyInfo())
    assert isinstance(reply, Reply) and isinstance(reply.payload, PolicyList)
    assert [str(n) for n, _ in reply.payload.policies] == [":", "carol:", "bob:"]


def test_info_all_one_and_subtree(ticker: bytes) -> None:
    v: Vmmd[object] = Vmmd()
    config = UnikernelConfig(image=ticker, memory=16)
    for who in (":tick1", ":tick2", "alice:a1"):
        start(v, who, config)
    reply = handle(v, ":", UnikernelInfo())
    assert isinstance(reply, Reply) and isinstance(reply.payload, UnikernelInfoList)
    assert [str(n) for n, _ in reply.payload.unikernels] == [":tick2", ":tick1", "alice:a1"]
    record = reply.payload.unikernels[0][1]
    assert record.digest == hashlib.sha256(ticker).digest()
    assert record.memory == 16 and record.started == NOW
    sub = handle(v, "alice:", UnikernelInfo())
    assert isinstance(sub, Reply) and isinstance(sub.payload, UnikernelInfoList)
    assert [str(n) for n, _ in sub.payload.unikernels] == [":a1"]
    assert handle(v, ":ghost", UnikernelInfo()) == Reply(UnikernelInfoList(()))


@pytest.mark.parametrize(
    ("stored_compressed", "level", "want_compressed"),
    [(True, 9, True), (True, 0, False), (False, 0, False), (False, 6, True)],
)
def test_get_compression(
    ticker: bytes, stored_compressed: bool, level: int, want_compressed: bool
) -> None:
    v: Vmmd[object] = Vmmd()
    stored = zlib.compress(ticker, 9) if stored_compressed else ticker
    start(v, ":t", UnikernelConfig(image=stored, compressed=stored_compressed))
    reply = handle(v, ":t", UnikernelGet(level))
    assert isinstance(reply, Reply) and isinstance(reply.payload, UnikernelImage)
    assert reply.payload.compressed is want_compressed
    data = reply.payload.image
    assert (zlib.decompress(data) if want_compressed else data) == ticker
    if stored_compressed and level > 0:
        assert data == stored  # returned as stored
    assert handle(v, ":ghost", UnikernelGet(9)) == Reply(Failure("get: no unikernel found"))


@pytest.mark.parametrize("stored_compressed", [True, False])
def test_get_with_a_negative_level_fails(ticker: bytes, stored_compressed: bool) -> None:
    v: Vmmd[object] = Vmmd()
    stored = zlib.compress(ticker, 9) if stored_compressed else ticker
    start(v, ":t", UnikernelConfig(image=stored, compressed=stored_compressed))
    assert handle(v, ":t", UnikernelGet(-1)) == Reply(
        Failure("get: compression level -1 is not within 0..9")
    )


def test_create_checks_in_prepare(ticker: bytes, net_image: bytes) -> None:
    v: Vmmd[object] = Vmmd(host_bridges=frozenset({"service"}))
    config = UnikernelConfig(image=ticker)
    assert handle(v, ":t", UnikernelCreate(config)) == Create(Name.parse(":t"), config)
    start(v, ":t", config)
    with pytest.raises(Refused, match=r"^Unikernel with same name is already running$"):
        v.prepare(Name.parse(":t"), config)
    with pytest.raises(Refused, match=r"^failed to uncompress: "):
        v.prepare(Name.parse(":z"), UnikernelConfig(image=b"not zlib", compressed=True))
    with pytest.raises(Refused, match="not an ELF file"):
        v.prepare(Name.parse(":g"), UnikernelConfig(image=b"garbage" * 20))
    wrong = UnikernelConfig(image=net_image, bridges=frozenset({NetIf("service", "service")}))
    with pytest.raises(
        Refused,
        match=r"^specified bridge\(s\) does not match with the manifest. "
        r'Devices present in manifest: net "service0"$',
    ):
        v.prepare(Name.parse(":n"), wrong)
    with pytest.raises(Refused, match=r"^block device :storage not found$"):
        v.prepare(
            Name.parse(":n"),
            UnikernelConfig(image=ticker, blocks=frozenset({BlockDevice("storage")})),
        )
    v.commit_block(Name.parse(":storage"), 1)
    with pytest.raises(Refused, match=r"^specified block device"):
        v.prepare(
            Name.parse(":n"),
            UnikernelConfig(image=ticker, blocks=frozenset({BlockDevice("storage")})),
        )
    absent = UnikernelConfig(image=net_image, bridges=frozenset({NetIf("service0", "br9")}))
    with pytest.raises(Refused, match=r"^interface br9 does not exist$"):
        v.prepare(Name.parse(":n"), absent)
    ok = UnikernelConfig(image=net_image, bridges=frozenset({NetIf("service0", "service")}))
    v.prepare(Name.parse(":n"), ok)


def test_force_create_discounts_the_old_instance(ticker: bytes) -> None:
    v: Vmmd[object] = Vmmd()
    handle(v, "alice:", PolicyAdd(Policy(1, frozenset({0}), 32, None, frozenset())))
    start(v, "alice:a", UnikernelConfig(image=ticker, memory=32))
    new = UnikernelConfig(image=ticker, memory=32, argv=("x",))
    assert handle(v, "alice:a", UnikernelCreate(new, force=True)) == WaitAndCreate(
        Name.parse("alice:a"), new
    )
    too_big = UnikernelConfig(image=ticker, memory=33)
    assert handle(v, "alice:a", UnikernelCreate(too_big, force=True)) == Reply(
        Failure("maximum allowed memory (32, used 0) would be exceeded (requesting 33)")
    )
    # not running: a plain create
    assert handle(v, "alice:b", UnikernelCreate(new, force=True)) == Reply(
        Failure("maximum amount of unikernels (1) reached")
    )


def test_destroy_and_the_waiter_bookkeeping(ticker: bytes) -> None:
    v: Vmmd[object] = Vmmd()
    assert handle(v, ":ghost", UnikernelDestroy()) == Reply(Failure("destroy: not found"))
    start(v, ":t", UnikernelConfig(image=ticker))
    assert handle(v, ":t", UnikernelDestroy()) == Wait(Name.parse(":t"))
    restart_waiter, destroy_waiter = object(), object()
    assert v.register_restart(Name.parse(":t"), restart_waiter)
    assert not v.register_restart(Name.parse(":t"), object())
    v.register(Name.parse(":t"), destroy_waiter)  # replaces (drops) the restart waiter
    assert v.dropped == [restart_waiter]
    assert v.exited(Name.parse(":t")) is destroy_waiter
    # the name now sits in `restarting` (albatross quirk): a second destroy says so
    assert handle(v, ":t", UnikernelDestroy()) == Reply(
        StringReply("destroyed: removed from restarting")
    )
    assert handle(v, ":t", UnikernelDestroy()) == Reply(Failure("destroy: not found"))
    w = object()
    v.register(Name.parse(":u"), w)
    assert handle(v, ":u", UnikernelDestroy()) == Reply(StringReply("destroyed: removed waiter"))
    assert w in v.dropped


def test_restart_keeps_or_replaces_arguments(ticker: bytes) -> None:
    v: Vmmd[object] = Vmmd()
    assert handle(v, ":t", UnikernelRestart()) == Reply(Failure("destroy: not found"))
    config = UnikernelConfig(image=ticker, memory=20, argv=("a",))
    start(v, ":t", config)
    assert handle(v, ":t", UnikernelRestart()) == WaitAndCreate(Name.parse(":t"), config)
    args = UnikernelArguments(memory=24, argv=("b",), fail_behaviour=Restart())
    outcome = handle(v, ":t", UnikernelRestart(args))
    assert isinstance(outcome, WaitAndCreate)
    assert outcome.config.memory == 24 and outcome.config.argv == ("b",)
    assert outcome.config.image == ticker
    bad = UnikernelArguments(memory=24, blocks=frozenset({BlockDevice("storage")}))
    outcome = handle(v, ":t", UnikernelRestart(bad))
    assert isinstance(outcome, Reply) and isinstance(outcome.payload, Failure)
    assert outcome.payload.message.startswith("specified block device(s) does not match")


def test_block_commands() -> None:
    v: Vmmd[object] = Vmmd()
    d = Name.parse(":disk")
    assert handle(v, ":disk", BlockAdd(1)) == AddBlock(d, 1)
    v.commit_block(d, 1)
    assert handle(v, ":disk", BlockAdd(1)) == Reply(
        Failure("block device with same name already exists")
    )
    assert handle(v, ":neg", BlockAdd(-1)) == Reply(Failure("overflow while computing bytes"))
    assert handle(v, ":disk", BlockSet(True)) == SetBlock(d, True, 1 << 20)
    assert handle(v, ":disk", BlockDump(9)) == DumpBlock(d, 9)
    assert handle(v, ":", BlockInfo()) == handle(v, ":disk", BlockInfo())
    for cmd, verb in ((BlockSet(False), "set"), (BlockDump(0), "dump"), (BlockRemove(), "remove")):
        assert handle(v, ":nope", cmd) == Reply(Failure(f"{verb} block: not found"))
    assert handle(v, ":disk", BlockRemove()) == RemoveBlock(d)


def test_blocks_in_use_are_refused(tmp_path: Path) -> None:
    v: Vmmd[object] = Vmmd()
    image = make_image(tmp_path, "blk", "--block", "storage")
    v.commit_block(Name.parse(":disk"), 1)
    start(
        v,
        ":b",
        UnikernelConfig(image=image, blocks=frozenset({BlockDevice("storage", "disk")})),
    )
    for cmd, verb in ((BlockSet(False), "set"), (BlockDump(0), "dump"), (BlockRemove(), "remove")):
        assert handle(v, ":disk", cmd) == Reply(Failure(f"{verb} block: is in use"))


def test_unknown_commands_and_stats_initial() -> None:
    v: Vmmd[object] = Vmmd()
    assert handle(v, ":x", ConsoleAdd(3)) == Reply(Failure("unknown command"))
    assert handle(v, ":x", StringReply("hi")) == Reply(Failure("unknown command"))
    assert handle(v, ":", StatsInitial()) == StatsChannel()


@pytest.mark.parametrize(
    ("behaviour", "code", "expected"),
    [
        (Quit(), 0, False),
        (Restart(), 0, True),
        (Restart(), 2, True),
        (Restart(), None, False),  # killed by a signal
        (Restart(), 1, False),
        (Restart(), 60, False),
        (Restart(), 64, False),
        (Restart(), 65, True),
        (Restart(frozenset({0, 7})), 7, True),
        (Restart(frozenset({0, 7})), 3, False),
    ],
)
def test_should_restart(behaviour: Quit | Restart, code: int | None, expected: bool) -> None:
    assert should_restart(UnikernelConfig(image=b"", fail_behaviour=behaviour), code) is expected


def test_bytes_of_mb() -> None:
    assert bytes_of_mb(1) == 1 << 20
    for bad in (0, -1, 1 << 43):
        with pytest.raises(Refused, match="overflow"):
            bytes_of_mb(bad)


def test_inline_block_data_is_bounded() -> None:
    v: Vmmd[object] = Vmmd()
    bomb = zlib.compress(bytes(MAX_IMAGE + 1))
    assert handle(v, ":big", BlockAddOld(100, True, bomb)) == Reply(
        Failure(f"inline data inflates beyond {MAX_IMAGE} octets")
    )
    assert handle(v, ":small", BlockAddOld(1, True, zlib.compress(bytes((1 << 20) + 1)))) == Reply(
        Failure("data exceeds block size")
    )
    assert handle(v, ":ok", BlockAddOld(1, True, zlib.compress(b"hi"))) == AddBlock(
        Name.parse(":ok"), 1, b"hi"
    )
