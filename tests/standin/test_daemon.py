"""The stand-in over its real sockets: lifecycle, consoles, stats, blocks, persistence, bad input.

Everything runs on pytest-trio's virtual clock (``autojump_clock``): a
simulated ticker prints a line per virtual second, and waits are instant.
"""

from __future__ import annotations

import hashlib
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio
import trio.testing

from core.wire import (
    BlockAdd,
    BlockAddOld,
    BlockData,
    BlockDeviceImage,
    BlockDeviceList,
    BlockDump,
    BlockDumpOld,
    BlockInfo,
    BlockRemove,
    BlockSet,
    BlockSetOld,
    ConsoleAdd,
    ConsoleData,
    ConsoleList,
    ConsoleListInactive,
    ConsoleSubscribe,
    Empty,
    Failure,
    InfoVariant,
    Name,
    NetIf,
    OldBlockDeviceImage,
    Policy,
    PolicyAdd,
    PolicyInfo,
    PolicyList,
    Restart,
    StatsAdd,
    StatsData,
    StatsInitial,
    StatsRemove,
    StatsSubscribe,
    StringReply,
    UnikernelArguments,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelGet,
    UnikernelInfo,
    UnikernelInfoList,
    UnikernelRestart,
    encode_message,
    frame,
)
from core.wire.state import decode_state
from standin.daemon import StandinError
from standin.images import make_image as make_demo_image
from standin.serving import SEND_TIMEOUT
from standin.testing import Standin, open_standin
from tests.standin.helpers import Client, make_image, request
from tests.wire import statefiles as sf

CREATED = StringReply("created unikernel")


@pytest.fixture
def ticker(tmp_path: Path) -> bytes:
    return make_image(tmp_path, "ticker")


async def names_running(standin: Standin, path: str = ":") -> list[str]:
    info = await request(standin.socket("vmmd"), path, UnikernelInfo())
    assert isinstance(info, UnikernelInfoList)
    return sorted(str(n) for n, _ in info.unikernels)


async def console_lines(standin: Standin, name: str, count: int, wanted: int) -> list[str]:
    client = await Client.connect(standin.socket("console"))
    try:
        await client.send(name, ConsoleSubscribe(count=count))
        assert await client.reply() == StringReply("subscribed")
        lines = []
        for _ in range(wanted):
            payload = await client.reply()
            assert isinstance(payload, ConsoleData)
            lines.append(payload.line)
        return lines
    finally:
        await client.close()


# -- unikernel lifecycle ---------------------------------------------------------------------


async def test_create_destroy_and_duplicate(
    tmp_path: Path, ticker: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_standin(tmp_path) as standin:
        vmmd = standin.socket("vmmd")
        config = UnikernelConfig(image=zlib.compress(ticker), compressed=True, memory=20)
        assert await request(vmmd, ":t", UnikernelCreate(config)) == CREATED
        assert await request(vmmd, ":t", UnikernelCreate(config)) == Failure(
            "Unikernel with same name is already running"
        )
        assert await names_running(standin) == [":t"]
        assert await request(vmmd, ":t", UnikernelDestroy()) == StringReply("destroyed unikernel")
        assert await names_running(standin) == []
        assert await request(vmmd, ":t", UnikernelDestroy()) == StringReply(
            "destroyed: removed from restarting"
        )
        assert await request(vmmd, ":t", UnikernelDestroy()) == Failure("destroy: not found")


async def test_console_history_live_and_exit_line(
    tmp_path: Path, ticker: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_standin(tmp_path) as standin:
        config = UnikernelConfig(image=ticker, argv=("a", "3"))
        assert await request(standin.socket("vmmd"), ":t", UnikernelCreate(config)) == CREATED
        await trio.sleep(5)  # three ticks, then exit 0
        lines = await console_lines(standin, ":t", 20, 5)
        assert lines == [
            "fake unikernel",
            "command line: --name=t a 3",
            "tick 1",
            "tick 2",
            "tick 3",
        ]
        assert await names_running(standin) == []
        inactive = await request(standin.socket("console"), ":", ConsoleListInactive())
        assert inactive == ConsoleList((Name((), "t"),))


async def test_demo_image_banner(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    image = make_demo_image(banner="hello from the demo")
    async with open_standin(tmp_path) as standin:
        reply = await request(standin.socket("vmmd"), ":d", UnikernelCreate(UnikernelConfig(image)))
        assert reply == CREATED
        lines = await console_lines(standin, ":d", 20, 3)
        assert lines == ["hello from the demo", "command line: --name=d", "tick 1"]


async def test_console_waiting_for_vm_then_live(
    tmp_path: Path, ticker: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_standin(tmp_path) as standin:
        client = await Client.connect(standin.socket("console"))
        await client.send(":later", ConsoleSubscribe(count=5))
        assert await client.reply() == StringReply("waiting for VM")
        await request(standin.socket("vmmd"), ":later", UnikernelCreate(UnikernelConfig(ticker)))
        first = await client.reply()
        assert isinstance(first, ConsoleData) and first.line == "fake unikernel"
        await client.close()


async def test_console_refusals(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with open_standin(tmp_path) as standin:
        console = standin.socket("console")
        assert await request(console, "alice:", ConsoleSubscribe(count=1)) == Failure(
            "path used instead of name"
        )
        assert await request(console, ":x", ConsoleListInactive()) == Failure("name used")


async def test_restart_on_failure_with_the_exit_argument(
    tmp_path: Path, ticker: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_standin(tmp_path) as standin:
        config = UnikernelConfig(
            image=ticker, argv=("standin-exit=7",), fail_behaviour=Restart(frozenset({7}))
        )
        assert await request(standin.socket("vmmd"), ":r", UnikernelCreate(config)) == CREATED
        await trio.sleep(3.5)
        assert await names_running(standin) == [":r"]  # exited 7, restarted
        lines = await console_lines(standin, ":r", 6, 6)
        assert lines.count("fake unikernel") >= 2
        assert await request(standin.socket("vmmd"), ":r", UnikernelDestroy()) in (
            StringReply("destroyed unikernel"),
            StringReply("destroyed: removed from restarting"),
        )
        await trio.sleep(5)
        assert await names_running(standin) == []


@pytest.mark.parametrize("code", [1, 3])
async def test_no_restart_on_exit_1_or_unlisted_codes(
    tmp_path: Path, ticker: bytes, code: int, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_standin(tmp_path) as standin:
        config = UnikernelConfig(
            image=ticker, argv=(f"standin-exit={code}",), fail_behaviour=Restart(frozenset({1, 7}))
        )
        assert await request(standin.socket("vmmd"), ":q", UnikernelCreate(config)) == CREATED
        await trio.sleep(5)
        assert await names_running(standin) == []


async def test_exit_64_with_injected_name_is_recreated_without_it(
    tmp_path: Path, ticker: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_standin(tmp_path) as standin:
        config = UnikernelConfig(image=ticker, argv=("standin-exit=64", "2"))
        assert await request(standin.socket("vmmd"), ":n", UnikernelCreate(config)) == CREATED
        await trio.sleep(1.5)
        lines = await console_lines(standin, ":n", 10, 6)
        assert "command line: --name=n standin-exit=64 2" in lines
        assert "command line: standin-exit=64 2" in lines


async def test_force_create_and_restart_with_arguments(
    tmp_path: Path, ticker: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_standin(tmp_path) as standin:
        vmmd = standin.socket("vmmd")
        assert await request(vmmd, ":f", UnikernelCreate(UnikernelConfig(ticker))) == CREATED
        forced = UnikernelConfig(ticker, argv=("forced",), memory=40)
        assert await request(vmmd, ":f", UnikernelCreate(forced, force=True)) == CREATED
        info = await request(vmmd, ":f", UnikernelInfo())
        assert isinstance(info, UnikernelInfoList)
        assert info.unikernels[0][1].argv == ("forced",)
        args = UnikernelArguments(memory=24, argv=("again",))
        assert await request(vmmd, ":f", UnikernelRestart(args)) == CREATED
        info = await request(vmmd, ":f", UnikernelInfo())
        assert isinstance(info, UnikernelInfoList)
        record = info.unikernels[0][1]
        assert (record.memory, record.argv) == (24, ("again",))
        assert await request(vmmd, ":f", UnikernelRestart()) == CREATED
        assert await request(vmmd, ":g", UnikernelRestart()) == Failure("destroy: not found")


async def test_old_info_variants(
    tmp_path: Path, ticker: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_standin(tmp_path) as standin:
        vmmd = standin.socket("vmmd")
        await request(vmmd, ":one", UnikernelCreate(UnikernelConfig(ticker)))
        for variant in (InfoVariant.V5, InfoVariant.V4):
            info = await request(vmmd, ":one", UnikernelInfo(variant))
            assert isinstance(info, UnikernelInfoList) and info.variant is variant
            assert [str(n) for n, _ in info.unikernels] == [":one"]
        two = UnikernelConfig(ticker, cpuids=frozenset({0, 1}))
        await request(vmmd, ":two", UnikernelCreate(two))
        reply = await request(vmmd, ":two", UnikernelInfo(InfoVariant.V5))
        assert isinstance(reply, Failure)
        assert reply.message.startswith("cannot encode the reply: ")


async def test_policies_through_the_socket(
    tmp_path: Path, ticker: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    alice = Policy(1, frozenset({0}), 32, None, frozenset({"service"}))
    async with open_standin(tmp_path) as standin:
        client = await Client.connect(standin.socket("vmmd"))
        await client.send("alice:", PolicyAdd(alice))
        assert await client.reply() == StringReply("added policy")
        await client.send("alice:a", UnikernelCreate(UnikernelConfig(ticker, memory=33)))
        assert await client.reply() == Failure(
            "maximum allowed memory (32, used 0) would be exceeded (requesting 33)"
        )
        assert await client.receive() is None  # a failure closes the connection
        info = await request(standin.socket("vmmd"), "alice:", PolicyInfo())
        assert info == PolicyList(((Name(), alice),))


async def test_network_unikernel_gets_a_tap_and_albatross_mac(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    image = make_image(tmp_path, "netticker", "--net", "service0")
    config = UnikernelConfig(image, bridges=frozenset({NetIf("service0", "service")}))
    async with open_standin(tmp_path, bridges=("service",)) as standin:
        assert await request(standin.socket("vmmd"), ":n", UnikernelCreate(config)) == CREATED
        info = await request(standin.socket("vmmd"), ":n", UnikernelInfo())
        assert isinstance(info, UnikernelInfoList)
        (net,) = info.unikernels[0][1].bridges
        assert (net.name, net.bridge) == ("service0", "service")
        digest = hashlib.md5(b"service0:n", usedforsecurity=False).digest()
        assert net.mac == b"\x00\x80\x41" + digest[:3]
        other = UnikernelConfig(image, bridges=frozenset({NetIf("service0", "nosuch")}))
        vmmd = standin.socket("vmmd")
        assert await request(vmmd, ":m", UnikernelCreate(other)) == Failure(
            "bridges nosuch not allowed by policy"
        )
        # no policy at `nopolicy:` - unlimited, so the host check speaks
        assert await request(vmmd, "nopolicy:m", UnikernelCreate(other)) == Failure(
            "interface nosuch does not exist"
        )


async def test_a_bare_host_accepts_a_policy_naming_a_bridge_it_lacks(
    tmp_path: Path, ticker: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    # albatrossd on a host without bridges (the stand-in's default): the root policy is never
    # consulted for a delegate's policy or create (vmm_resources.ml); a network fails later,
    # when the daemon looks for the bridge (vmm_unix.ml bridges_exist)
    image = make_image(tmp_path, "netticker", "--net", "service0")
    net = UnikernelConfig(image, bridges=frozenset({NetIf("service0", "service")}))
    alice = Policy(2, frozenset({0}), 64, None, frozenset({"service"}))
    async with open_standin(tmp_path) as standin:
        vmmd = standin.socket("vmmd")
        root = await request(vmmd, ":", PolicyInfo())
        assert isinstance(root, PolicyList) and dict(root.policies)[Name()].bridges == set()
        assert await request(vmmd, "alice:", PolicyAdd(alice)) == StringReply("added policy")
        assert await request(vmmd, "alice:a", UnikernelCreate(UnikernelConfig(ticker))) == CREATED
        assert await request(vmmd, "alice:n", UnikernelCreate(net)) == Failure(
            "interface service does not exist"
        )
        assert await request(vmmd, ":n", UnikernelCreate(net)) == Failure(
            "bridges service not allowed by policy"
        )


# -- stats -------------------------------------------------------------------------------------


async def test_stats_subscription_relative_names_and_replacement(
    tmp_path: Path, ticker: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_standin(tmp_path, stats_interval=10) as standin:
        vmmd = standin.socket("vmmd")
        await request(vmmd, "alice:a1", UnikernelCreate(UnikernelConfig(ticker)))
        first = await Client.connect(standin.socket("stat"))
        await first.send("alice:", StatsSubscribe())
        assert await first.reply() == StringReply("subscribed")
        msg = await first.receive()
        assert msg is not None and isinstance(msg.payload, StatsData)
        assert str(msg.header.name) == ":a1" and msg.header.sequence == 0
        assert msg.payload.kinfo_mem is not None
        second = await Client.connect(standin.socket("stat"))
        await second.send("alice:", StatsSubscribe())
        assert await second.reply() == StringReply("subscribed")
        assert await first.receive() is None  # replaced: the old socket is closed
        await first.close()
        await second.send(":", StatsInitial())
        assert await second.reply() == Failure("unexpected message initial")
        await second.close()


async def test_stats_channel_for_an_external_stats_daemon(
    tmp_path: Path, ticker: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_standin(tmp_path) as standin:
        await request(standin.socket("vmmd"), ":t", UnikernelCreate(UnikernelConfig(ticker)))
        channel = await Client.connect(standin.socket("vmmd"))
        await channel.send(":", StatsInitial(), sequence=0)
        assert await channel.reply() == Empty()
        add = await channel.receive()
        assert add is not None and isinstance(add.payload, StatsAdd)
        assert str(add.header.name) == ":t"
        await channel.stream.send_all(
            frame(encode_message(add.__class__(add.header, StringReply("added"))))
        )
        await channel.close()


async def test_stats_add_and_remove_from_an_outside_vmmd(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_standin(tmp_path, stats_interval=5) as standin:
        feeder = await Client.connect(standin.socket("stat"))
        await feeder.send(":ext", StatsAdd("vmm0", 4242, (("service0", "vmmtap9"),)))
        assert await feeder.reply() == StringReply("added")
        watcher = await Client.connect(standin.socket("stat"))
        await watcher.send(":", StatsSubscribe())
        assert await watcher.reply() == StringReply("subscribed")
        data = await watcher.receive()
        assert data is not None and isinstance(data.payload, StatsData)
        assert str(data.header.name) == ":ext"
        assert [i.bridge for i in data.payload.ifdata] == ["service0"]
        await feeder.send(":ext", StatsRemove())
        assert await feeder.reply() == StringReply("removed")
        await feeder.send(":", UnikernelInfo())
        assert await feeder.reply() == Failure("unexpected command")
        assert await feeder.receive() is None
        for c in (feeder, watcher):
            await c.close()


async def test_console_add_from_outside_is_refused(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_standin(tmp_path) as standin:
        console = standin.socket("console")
        assert await request(console, ":x", ConsoleAdd(3)) == Failure("opening")
        assert await request(console, "p:", ConsoleAdd(3)) == Failure("path used instead of name")


# -- block devices -------------------------------------------------------------------------------


async def dump(standin: Standin, name: str, level: int) -> bytes:
    client = await Client.connect(standin.socket("vmmd"))
    try:
        await client.send(name, BlockDump(level))
        assert await client.reply() == BlockDeviceImage(level != 0)
        data = b""
        while True:
            piece = await client.reply()
            assert isinstance(piece, BlockData)
            if piece.data is None:
                return zlib.decompress(data) if level else data
            data += piece.data
    finally:
        await client.close()


async def set_block(standin: Standin, name: str, chunks: list[bytes], compressed: bool) -> object:
    client = await Client.connect(standin.socket("vmmd"))
    try:
        await client.send(name, BlockSet(compressed))
        for chunk in chunks:
            await client.send_raw(frame(chunk))
        await client.send_raw(b"\0\0\0\0")
        return await client.reply()
    finally:
        await client.close()


async def test_block_add_set_dump_remove(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    data = bytes(range(256)) * 300
    async with open_standin(tmp_path) as standin:
        vmmd = standin.socket("vmmd")
        assert await request(vmmd, ":d", BlockAdd(1)) == StringReply("added block device")
        assert (standin.state_dir / "block" / ":d").stat().st_size == 1 << 20
        packed = zlib.compress(data)
        reply = await set_block(standin, ":d", [packed[:100], packed[100:]], True)
        assert reply == StringReply("set block device")
        assert (await dump(standin, ":d", 0))[: len(data)] == data
        assert await dump(standin, ":d", 9) == data + bytes((1 << 20) - len(data))
        assert await set_block(standin, ":d", [b"x" * 4096], False) == StringReply(
            "set block device"
        )
        assert (await dump(standin, ":d", 0))[:4097] == b"x" * 4096 + b"\0"
        too_much = zlib.compress(bytes((1 << 20) + 1))
        assert await set_block(standin, ":d", [too_much], True) == Failure("stream exceeds size")
        info = await request(vmmd, ":", BlockInfo())
        assert isinstance(info, BlockDeviceList) and info.devices[0].size == 1
        assert await request(vmmd, ":d", BlockRemove()) == StringReply("removed block")
        assert not (standin.state_dir / "block" / ":d").exists()


async def test_legacy_block_commands(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_standin(tmp_path) as standin:
        vmmd = standin.socket("vmmd")
        add = BlockAddOld(1, True, zlib.compress(b"hello"))
        assert await request(vmmd, ":o", add) == StringReply("added block device")
        reply = await request(vmmd, ":o", BlockDumpOld(0))
        assert isinstance(reply, OldBlockDeviceImage) and reply.image.startswith(b"hello\0")
        assert await request(vmmd, ":o", BlockSetOld(False, b"bye")) == StringReply(
            "set block device"
        )
        reply = await request(vmmd, ":o", BlockDumpOld(9))
        assert isinstance(reply, OldBlockDeviceImage) and reply.compressed
        assert zlib.decompress(reply.image).startswith(b"bye\0")
        assert await request(vmmd, ":o", BlockSetOld(False, bytes((1 << 20) + 1))) == Failure(
            "data exceeds block size"
        )


# -- persistence -------------------------------------------------------------------------------


async def test_state_survives_a_restart(
    tmp_path: Path, ticker: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    alice = Policy(3, frozenset({0}), 64, 10, frozenset({"service"}))
    async with open_standin(tmp_path) as standin:
        vmmd = standin.socket("vmmd")
        client = await Client.connect(vmmd)
        await client.send("alice:", PolicyAdd(alice))
        assert await client.reply() == StringReply("added policy")
        await client.send("alice:a", UnikernelCreate(UnikernelConfig(ticker, argv=("x",))))
        assert await client.reply() == CREATED
        await client.close()
        assert await request(vmmd, "alice:d", BlockAdd(2)) == StringReply("added block device")
        await standin.restart()
        assert await names_running(standin) == ["alice:a"]
        policies = await request(vmmd, "alice:", PolicyInfo())
        assert policies == PolicyList(((Name(), alice),))
        blocks = await request(vmmd, "alice:", BlockInfo())
        assert isinstance(blocks, BlockDeviceList)
        assert [(str(b.name), b.size) for b in blocks.devices] == [(":d", 2)]
        lines = await console_lines(standin, "alice:a", 20, 2)
        assert lines == ["fake unikernel", "command line: --name=a x"]
        assert await request(vmmd, "alice:a", UnikernelDestroy()) == StringReply(
            "destroyed unikernel"
        )
        await standin.restart(bridges=("br0",))
        assert await names_running(standin) == []
        root = await request(vmmd, ":", PolicyInfo())
        assert isinstance(root, PolicyList)
        assert dict(root.policies)[Name()].bridges == {"br0"}


@pytest.mark.parametrize("layout", [1, 2])
async def test_starts_from_an_old_albatross_state_and_writes_the_current_layout(
    tmp_path: Path, layout: int, autojump_clock: trio.testing.MockClock
) -> None:
    # [1] holds v0 configs (compressed by image tag, networks named like their bridge);
    # [2] v2 configs (network service0 on bridge service).  Neither has policies.
    image = make_image(tmp_path, "netticker", "--net", "service0" if layout == 2 else "service")
    if layout == 1:
        value = sf.v0_config(1, 24, 2, zlib.compress(image), networks=["service"], argv=["x"])
    else:
        value = sf.v2_config(sf.SOLO5, False, image, sf.QUIT, 1, 24,
                             bridges=[("service0", "service")], argv=["x"])  # fmt: skip
    old = sf.unikernels_only(layout, ("Old", value))
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state").write_bytes(old)
    async with open_standin(tmp_path, bridges=("service",)) as standin:  # the host's bridge
        assert await names_running(standin) == [":old"]
        info = await request(standin.socket("vmmd"), ":old", UnikernelInfo())
        assert isinstance(info, UnikernelInfoList)
        (record,) = info.unikernels
        assert (record[1].cpuids, record[1].memory) == (frozenset({1}), 24)
        assert [n.bridge for n in record[1].bridges] == ["service"]
        lines = await console_lines(standin, ":old", 20, 2)
        assert lines == ["fake unikernel", "command line: --name=old x"]
    # albatrossd keeps the file it started from, and re-creating the unikernels rewrote it.
    assert (tmp_path / "state" / "state.started").read_bytes() == old
    written = decode_state((tmp_path / "state" / "state").read_bytes())
    assert written.layout == 6
    assert [str(u.name) for u in written.unikernels] == [":old"]
    assert written.unikernels[0].config == decode_state(old).unikernels[0].config


async def test_a_non_socket_in_the_way_is_a_clear_error_and_nothing_leaks(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    util = tmp_path / "run" / "util"
    util.mkdir(parents=True)
    (util / "console.sock").write_text("not a socket")
    with pytest.raises(StandinError, match="exists and is not a socket"):
        async with open_standin(tmp_path):
            pass
    assert sorted(p.name for p in util.iterdir()) == ["console.sock"]  # vmmd.sock cleaned up


async def test_corrupt_state_file_is_a_clear_error(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state").write_bytes(b"\x00\x00\x00\x05hello")
    with pytest.raises(StandinError, match="couldn't parse state"):
        async with open_standin(tmp_path):
            pass


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sock", ["vmmd", "console", "stat"])
async def test_garbage_closes_only_that_connection(
    tmp_path: Path, sock: str, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_standin(tmp_path) as standin:
        bad = await Client.connect(standin.socket(sock))
        good = await Client.connect(standin.socket("vmmd"))
        await bad.send_raw(frame(b"\x30\x03garbage"))
        assert await bad.receive() is None
        oversized = await Client.connect(standin.socket(sock))
        await oversized.send_raw(b"\x7f\xff\xff\xff")
        assert await oversized.receive() is None
        await good.send(":", UnikernelInfo())
        assert await good.reply() == UnikernelInfoList(())
        for c in (bad, good, oversized):
            await c.close()


async def test_create_at_a_path_name_fails_like_albatross(
    tmp_path: Path, ticker: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_standin(tmp_path) as standin:
        reply = await request(
            standin.socket("vmmd"), "alice:", UnikernelCreate(UnikernelConfig(ticker))
        )
        assert reply == Failure("could not create unikernel: console failed")


async def test_console_since(
    tmp_path: Path, ticker: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_standin(tmp_path) as standin:
        await request(standin.socket("vmmd"), ":s", UnikernelCreate(UnikernelConfig(ticker)))
        await trio.sleep(2.5)
        client = await Client.connect(standin.socket("console"))
        await client.send(":s", ConsoleSubscribe(since=datetime(2026, 1, 1, tzinfo=UTC)))
        assert await client.reply() == StringReply("subscribed")
        lines = [await client.reply() for _ in range(5)]
        assert [p.line for p in lines if isinstance(p, ConsoleData)] == [
            "fake unikernel",
            "command line: --name=s",
            "tick 1",
            "tick 2",
            "tick 3",
        ]
        await client.close()


async def test_unknown_command_on_vmmd(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_standin(tmp_path) as standin:
        assert await request(standin.socket("vmmd"), ":x", ConsoleSubscribe(count=1)) == Failure(
            "unknown command"
        )


async def test_a_peer_that_stops_reading_is_dropped(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    big = make_image(tmp_path, "big", "--size", str(8 << 20))
    async with open_standin(tmp_path) as standin:
        vmmd = standin.socket("vmmd")
        assert await request(vmmd, ":big", UnikernelCreate(UnikernelConfig(big))) == CREATED
        stuck = await Client.connect(vmmd)
        await stuck.send(":big", UnikernelGet(0))  # an 8 MB reply nobody reads
        await trio.sleep(1)
        assert await names_running(standin) == [":big"]  # everyone else carries on
        await trio.sleep(SEND_TIMEOUT + 1)
        assert await stuck.receive() is None  # the daemon gave up and closed it
        await stuck.close()


async def test_idle_connection_is_dropped(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_standin(tmp_path) as standin:
        idle = await Client.connect(standin.socket("vmmd"))
        await trio.sleep(standin.config.idle_timeout + 1)
        assert await idle.receive() is None
        await idle.close()
