"""The request path against a scriptable fake daemon: headers, policies, modes, failures."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from core.wire import (
    ROOT,
    BlockData,
    BlockDeviceImage,
    BlockDump,
    BlockSet,
    BlockSetOld,
    ConsoleData,
    ConsoleSubscribe,
    Empty,
    End,
    Failure,
    Header,
    Message,
    Name,
    PolicyAdd,
    StringReply,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelInfo,
    UnikernelInfoList,
    end_marker,
    frame,
)
from tests.endpoint.fakedaemon import Conn, reply_table
from tests.endpoint.harness import open_harness, with_fake_daemon
from tests.endpoint.pki import POLICY

INFO = UnikernelInfoList(())


async def test_single_reply_with_policies_deepest_first(tmp_path: Path) -> None:
    async with with_fake_daemon(tmp_path, {"vmmd": reply_table({UnikernelInfo: INFO})}) as (
        daemon,
        h,
    ):
        alice = h.pki.sub_ca("alice")
        bob = h.pki.sub_ca("bob", parent=alice)
        replies = await h.run(h.pki.leaf("b1", UnikernelInfo(), via=[bob, alice]))
    assert replies == [Message(Header(Name(("alice", "bob"), "b1"), 0, 5), INFO)]
    (conn,) = daemon.conns("vmmd")
    assert conn.received == [
        Message(Header(Name(("alice", "bob")), 0), PolicyAdd(POLICY)),
        Message(Header(Name(("alice",)), 1), PolicyAdd(POLICY)),
        Message(Header(Name(("alice", "bob"), "b1"), 2), UnikernelInfo()),
    ]


async def test_sequence_counter_is_global(tmp_path: Path) -> None:
    async with with_fake_daemon(tmp_path, {"vmmd": reply_table({UnikernelDestroy: Empty()})}) as (
        daemon,
        h,
    ):
        for _ in range(3):
            await h.run(h.pki.leaf("x", UnikernelDestroy()))
    sequences = [c.received[0].header.sequence for c in daemon.conns("vmmd")]  # type: ignore[union-attr]
    assert sequences == [0, 1, 2]


async def test_streamed_image_replaces_the_empty_one(tmp_path: Path) -> None:
    created = StringReply("created unikernel")
    async with with_fake_daemon(tmp_path, {"vmmd": reply_table({UnikernelCreate: created})}) as (
        daemon,
        h,
    ):
        command = UnikernelCreate(UnikernelConfig(image=b"", compressed=False))
        replies = await h.run(h.pki.leaf("up", command), upload=[b"abc", b"def" * 1000])
    assert [m.payload for m in replies] == [created]
    (sent,) = daemon.conns("vmmd")[0].received
    assert isinstance(sent, Message) and isinstance(sent.payload, UnikernelCreate)
    assert sent.payload.config.image == b"abc" + b"def" * 1000


async def test_block_set_stream_is_relayed_frame_for_frame(tmp_path: Path) -> None:
    chunks = [b"\x78\xda" + b"x" * 580, b"\x01\x02\x03\x04"]
    async with with_fake_daemon(
        tmp_path, {"vmmd": reply_table({BlockSet: StringReply("set")})}
    ) as (daemon, h):
        replies = await h.run(h.pki.leaf("disk1", BlockSet(True)), upload=chunks)
    assert [m.payload for m in replies] == [StringReply("set")]
    received = daemon.conns("vmmd")[0].received
    assert received[1:] == [*chunks, End()]


async def test_dump_forwards_daemon_headers_and_ends_with_no_data(tmp_path: Path) -> None:
    async def dump(conn: Conn) -> None:
        await conn.receive()
        await conn.send(BlockDeviceImage(True), Name((), "disk1"), 7)
        await conn.send(BlockData(b"chunk"), Name((), "disk1"), 7)
        await conn.send(BlockData(None), Name((), "ignored"), 9)

    async with with_fake_daemon(tmp_path, {"vmmd": dump}) as (_daemon, h):
        replies = await h.run(h.pki.leaf("disk1", BlockDump(9)))
    assert replies == [
        Message(Header(Name((), "disk1"), 7, 5), BlockDeviceImage(True)),
        Message(Header(Name((), "disk1"), 7, 5), BlockData(b"chunk")),
        Message(Header(Name((), "disk1"), 0, 5), BlockData(None)),
    ]


async def test_console_stream_then_daemon_close(tmp_path: Path) -> None:
    import datetime as dt

    line = ConsoleData(dt.datetime(2026, 11, 27, tzinfo=dt.UTC), "tick 1")

    async def console(conn: Conn) -> None:
        await conn.receive()
        await conn.send(StringReply("subscribed"), Name((), "tick1"), 3)
        await conn.send(line, Name((), "tick1"), 3)

    async with with_fake_daemon(tmp_path, {"console": console}) as (daemon, h):
        replies = await h.run(h.pki.leaf("tick1", ConsoleSubscribe(count=5)))
    assert [m.payload for m in replies[:2]] == [StringReply("subscribed"), line]
    final = replies[2]
    assert final.header == Header(Name((), "tick1"), 0, 5)
    assert isinstance(final.payload, Failure)
    assert final.payload.message.startswith("exception while reading from fd")
    # no policy adds on the console socket
    assert len(daemon.conns("console")[0].received) == 1


async def test_policy_rejected_by_daemon(tmp_path: Path) -> None:
    async def strict(conn: Conn) -> None:
        message = await conn.receive()
        await conn.send(
            Failure("policy above allows 2 unikernels, which is fewer than 10"), message.header.name
        )

    async with with_fake_daemon(tmp_path, {"vmmd": strict}) as (daemon, h):
        alice = h.pki.sub_ca("alice")
        replies = await h.run(h.pki.leaf("a1", UnikernelInfo(), via=[alice]))
    assert replies == [
        Message(
            Header(Name(("alice",), "a1"), 0, 5),
            Failure(
                "expected success when adding policy, got: host [unikernel: alice:]: "
                "command failed policy above allows 2 unikernels, which is fewer than 10"
            ),
        )
    ]
    assert len(daemon.conns("vmmd")[0].received) == 1  # the command was never sent


async def test_refusal_gets_a_failure_reply(tmp_path: Path) -> None:
    async with with_fake_daemon(tmp_path, {"vmmd": reply_table({})}) as (daemon, h):
        replies = await h.run(h.pki.leaf("x", PolicyAdd(POLICY)))
    assert len(replies) == 1
    assert replies[0].header == Header(ROOT, 0, 5)
    assert isinstance(replies[0].payload, Failure)
    assert replies[0].payload.message.startswith("unexpected command: policy add")
    assert daemon.connections == []


async def test_daemon_down(tmp_path: Path) -> None:
    async with open_harness(tmp_path, tmp_path / "nowhere") as h:
        (reply,) = await h.run(h.pki.leaf("x", UnikernelInfo()))
    assert isinstance(reply.payload, Failure)
    assert reply.payload.message.startswith("couldn't reach service vmmd: ")
    assert "No such file or directory" in reply.payload.message


async def test_daemon_closes_without_reply(tmp_path: Path) -> None:
    async def rude(conn: Conn) -> None:
        await conn.receive()

    async with with_fake_daemon(tmp_path, {"vmmd": rude}) as (_daemon, h):
        (reply,) = await h.run(h.pki.leaf("x", UnikernelInfo()))
    assert reply.payload == Failure(
        "error reading from fd: vmmd daemon closed the connection before sending a frame"
    )


async def test_daemon_sends_garbage(tmp_path: Path) -> None:
    async def garbage(conn: Conn) -> None:
        await conn.receive()
        await conn.send_raw(b"\x00\x00\x00\x03abc")
        await trio.sleep_forever()

    async with with_fake_daemon(tmp_path, {"vmmd": garbage}) as (_daemon, h):
        (reply,) = await h.run(h.pki.leaf("x", UnikernelInfo()))
    assert isinstance(reply.payload, Failure)
    assert reply.payload.message.startswith(
        "error reading from fd: vmmd daemon sent an undecodable message"
    )


async def test_daemon_frame_too_large(tmp_path: Path) -> None:
    from tlsendpoint.limits import Limits

    async def huge(conn: Conn) -> None:
        await conn.receive()
        await conn.send_raw(b"\x10\x00\x00\x00")  # 256 MiB announced
        await trio.sleep_forever()

    async with with_fake_daemon(tmp_path, {"vmmd": huge}, Limits(max_frame=1 << 20)) as (
        _daemon,
        h,
    ):
        (reply,) = await h.run(h.pki.leaf("x", UnikernelInfo()))
    assert reply.payload == Failure(
        "error reading from fd: frame of 268435456 octets exceeds the limit of 1048576 octets"
    )


async def test_upload_one_byte_at_a_time(tmp_path: Path) -> None:
    created = StringReply("created unikernel")
    async with with_fake_daemon(tmp_path, {"vmmd": reply_table({UnikernelCreate: created})}) as (
        daemon,
        h,
    ):
        client = await h.connect(h.pki.leaf("up", UnikernelCreate(UnikernelConfig(image=b""))))
        wire = frame(b"hello ") + frame(b"world") + end_marker()
        for i in range(len(wire)):
            await client.tls.send_all(wire[i : i + 1])
        replies = await client.read_all()
    assert [m.payload for m in replies] == [created]
    sent = daemon.conns("vmmd")[0].received[0]
    assert isinstance(sent, Message) and isinstance(sent.payload, UnikernelCreate)
    assert sent.payload.config.image == b"hello world"


async def test_legacy_block_set_with_empty_data_relays_a_stream(tmp_path: Path) -> None:
    async def legacy(conn: Conn) -> None:
        await conn.receive()
        await conn.receive_stream()
        await conn.send(StringReply("set"))

    async with with_fake_daemon(tmp_path, {"vmmd": legacy}) as (daemon, h):
        replies = await h.run(h.pki.leaf("d", BlockSetOld(False, b"")), upload=[b"abc"])
    assert [m.payload for m in replies] == [StringReply("set")]
    assert daemon.conns("vmmd")[0].received[1:] == [b"abc", End()]


async def test_daemon_closing_mid_dump(tmp_path: Path) -> None:
    async def half_dump(conn: Conn) -> None:
        await conn.receive()
        await conn.send(BlockDeviceImage(False), Name((), "disk1"))
        await conn.send(BlockData(b"part"), Name((), "disk1"))

    async with with_fake_daemon(tmp_path, {"vmmd": half_dump}) as (_daemon, h):
        replies = await h.run(h.pki.leaf("disk1", BlockDump(0)))
    assert [m.payload for m in replies[:2]] == [BlockDeviceImage(False), BlockData(b"part")]
    final = replies[2].payload
    assert isinstance(final, Failure)
    assert final.message.startswith("exception while reading from fd: vmmd daemon closed")


async def test_client_chatter_during_a_stream_is_ignored(tmp_path: Path) -> None:
    import datetime as dt

    line = ConsoleData(dt.datetime(2026, 11, 27, tzinfo=dt.UTC), "tick")
    go = trio.Event()

    async def console(conn: Conn) -> None:
        await conn.receive()
        await conn.send(StringReply("subscribed"))
        await go.wait()
        await conn.send(line)

    async with with_fake_daemon(tmp_path, {"console": console}) as (_daemon, h):
        client = await h.connect(h.pki.leaf("t", ConsoleSubscribe(count=1)))
        assert (await client.read_one()).payload == StringReply("subscribed")
        await client.tls.send_all(b"unexpected bytes" * 1000)
        await trio.testing.wait_all_tasks_blocked()
        go.set()
        assert (await client.read_one()).payload == line
        await client.tls.aclose()
