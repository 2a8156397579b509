"""End to end through the endpoint and the daemon stand-in: the vectors' replies, the story
of a delegated user, streamed and 8 MiB images, block devices, console."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import trio
from cryptography.hazmat.primitives.serialization import Encoding

from core.clock import fixed_clock
from core.wire import (
    ROOT,
    BlockAdd,
    BlockData,
    BlockDeviceImage,
    BlockDump,
    BlockSet,
    Command,
    ConsoleData,
    ConsoleSubscribe,
    Failure,
    Header,
    Message,
    Name,
    Policy,
    PolicyInfo,
    PolicyList,
    StringReply,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelInfo,
    UnikernelInfoList,
    decode_message,
)
from standin.testing import open_standin
from tests.endpoint.harness import Client, open_harness
from tests.endpoint.pki import Identity
from tests.endpoint.vectorcerts import VectorPki, resign_leaf
from tests.vectors import CASES, CERTS, MKFAKE, case_frames
from tlsendpoint.activation import tcp_listen_socket
from tlsendpoint.limits import Limits
from tlsendpoint.server import Endpoint
from tlsendpoint.tlscontext import load_server_context


def _fake_image(tmp_path: Path, *extra: str) -> bytes:
    out = tmp_path / f"fake{len(extra)}.hvt"
    subprocess.run([sys.executable, str(MKFAKE), *extra, str(out)], check=True, timeout=60)
    return out.read_bytes()


def _captured_replies(case: str) -> list[Message]:
    frames = [f for f in case_frames(CASES / case) if f.direction == "from_daemon"]
    return [decode_message(f.body) for f in frames]


#: The captured leaves, in the order of their cases; ``(leaf id, stream?)``.  Between them,
#: commands of our own (signed with the vector CA key) recreate the state the corpus had.
VECTOR_ORDER: list[tuple[str, bool]] = [
    ("info", False),
    ("create", False),
    ("force-create", False),
    ("create-compress0", False),
    ("console-subscribe", True),
    ("stats-subscribe", True),
    ("get", False),
    ("destroy", False),  # after our "create tick2"
    ("inactive-consoles", False),
    ("block-add", False),
    ("block-info", False),
    ("block-set", False),
    ("create-with-block", False),
    ("block-remove", False),  # after our "destroy blkuk"
    ("policy-info", False),
    ("alice-create", False),
    ("bob-create", False),
]

#: Replies whose content depends on details of the corpus's history (times, pids,
#: earlier unikernels): only their kind and name are compared.
_KIND_ONLY = {"get", "inactive-consoles", "block-info", "policy-info"}


async def _tcp_endpoint_port(
    nursery: trio.Nursery, endpoint: Endpoint, shutdown: trio.Event
) -> int:
    sock = tcp_listen_socket("127.0.0.1", 0, 16)
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
    (address,) = await nursery.start(endpoint.serve, [listener], shutdown)
    return int(address[1])


async def test_captured_leaves_get_the_captured_replies(tmp_path: Path) -> None:
    """A raw TLS client on loopback presents the re-signed captured leaves."""
    pki = VectorPki(tmp_path)
    image = _fake_image(tmp_path)
    async with open_standin(tmp_path) as standin, trio.open_nursery() as nursery:
        ctx = load_server_context(pki.ca_file, pki.cert_file, pki.key_file)
        clock = fixed_clock(pki.now)  # the captured chains, judged as at the capture
        endpoint = Endpoint(ctx, standin.tmpdir / "util", Limits(), clock=clock)
        shutdown = trio.Event()
        port = await _tcp_endpoint_port(nursery, endpoint, shutdown)

        async def connect(identity: Identity) -> Client:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            tls = trio.SSLStream(stream, pki.client(identity), server_hostname=None)
            await tls.do_handshake()
            return Client(tls)

        async def ours(name: str, command: Command) -> None:
            client = await connect(pki.leaf(name, command))
            (reply,) = await client.read_all()
            assert isinstance(reply.payload, StringReply), reply

        for leaf_id, streaming in VECTOR_ORDER:
            if leaf_id == "destroy":
                await ours("tick2", UnikernelCreate(UnikernelConfig(image=image)))
            if leaf_id == "block-remove":
                await ours("blkuk", UnikernelDestroy())
            meta = json.loads((CERTS / "leaf" / f"{leaf_id}.json").read_text())
            case = meta["source_case"]
            client = await connect(resign_leaf(leaf_id, pki.now))
            stream = CASES / case / "stream.hex"
            if stream.exists():
                await client.tls.send_all(bytes.fromhex(stream.read_text().strip()))
            captured = _captured_replies(case)
            if streaming:
                got = await client.read_one()
                await trio.aclose_forcefully(client.tls)
                expected = captured[0]
            else:
                (got,) = await client.read_all()
                expected = Message(Header(captured[-1].header.name, 0, 5), captured[-1].payload)
            assert got.header.name == expected.header.name, leaf_id
            if leaf_id in _KIND_ONLY:
                assert type(got.payload) is type(expected.payload), leaf_id
            else:
                assert got.payload == expected.payload, leaf_id
        shutdown.set()


async def test_delegated_user_story(tmp_path: Path) -> None:
    image = _fake_image(tmp_path)
    async with (
        open_standin(tmp_path) as standin,
        open_harness(tmp_path, standin.tmpdir / "util") as h,
    ):
        friend = h.pki.sub_ca("friend", Policy(1, frozenset({0}), 64, None, frozenset()))
        (reply,) = await h.run(h.pki.leaf(".", UnikernelInfo(), via=[friend]))
        assert reply == Message(Header(Name(("friend",)), 0, 5), UnikernelInfoList(()))
        create = UnikernelCreate(UnikernelConfig(image=image, memory=32))
        (reply,) = await h.run(h.pki.leaf("hello", create, via=[friend]))
        assert reply.payload == StringReply("created unikernel")
        (reply,) = await h.run(h.pki.leaf("second", create, via=[friend]))
        # the daemon's quota reason, relayed verbatim under the derived name
        assert reply == Message(
            Header(Name(("friend",), "second"), 0, 5),
            Failure("maximum amount of unikernels (1) reached"),
        )
        client = await h.connect(h.pki.leaf("hello", ConsoleSubscribe(count=5), via=[friend]))
        assert (await client.read_one()).payload == StringReply("subscribed")
        banner = await client.read_one()
        assert isinstance(banner.payload, ConsoleData)
        await client.tls.aclose()


async def test_streamed_and_eight_mib_images(tmp_path: Path) -> None:
    small = _fake_image(tmp_path)
    big = _fake_image(tmp_path, "--size", str(8 * 1024 * 1024 + 8192))
    async with (
        open_standin(tmp_path, memory=8192) as standin,
        open_harness(tmp_path, standin.tmpdir / "util") as h,
    ):
        streamed = UnikernelCreate(UnikernelConfig(image=b""))
        chunks = [small[i : i + 4096] for i in range(0, len(small), 4096)]
        (reply,) = await h.run(h.pki.leaf("streamed", streamed), upload=chunks)
        assert reply.payload == StringReply("created unikernel")
        embedded = UnikernelCreate(UnikernelConfig(image=big))
        identity = h.pki.leaf("big", embedded)
        assert len(identity.chain[0].public_bytes(Encoding.DER)) >= 8 * 1024 * 1024
        (reply,) = await h.run(identity)
        assert reply.payload == StringReply("created unikernel")


async def test_block_device_round_trip(tmp_path: Path) -> None:
    import zlib

    data = bytes(range(256)) * 4096  # 1 MiB
    async with (
        open_standin(tmp_path) as standin,
        open_harness(tmp_path, standin.tmpdir / "util") as h,
    ):
        (reply,) = await h.run(h.pki.leaf("disk", BlockAdd(1)))
        assert reply.payload == StringReply("added block device")
        packed = zlib.compress(data, 9)
        chunks = [packed[i : i + 65536] for i in range(0, len(packed), 65536)]
        (reply,) = await h.run(h.pki.leaf("disk", BlockSet(True)), upload=chunks)
        assert reply.payload == StringReply("set block device")
        replies = await h.run(h.pki.leaf("disk", BlockDump(0)))
    assert isinstance(replies[0].payload, BlockDeviceImage)
    assert replies[-1] == Message(Header(Name((), "disk"), 0, 5), BlockData(None))
    body = b"".join(m.payload.data or b"" for m in replies[1:-1])  # type: ignore[union-attr]
    assert (zlib.decompress(body) if replies[0].payload.compressed else body) == data


async def test_policy_larger_than_its_parent(tmp_path: Path) -> None:
    """albatross pushes alice:greedy first, and on a fresh daemon it sticks; we refuse first."""
    async with (
        open_standin(tmp_path) as standin,
        open_harness(tmp_path, standin.tmpdir / "util") as h,
    ):
        alice = h.pki.sub_ca("alice", Policy(2, frozenset({0}), 64, None, frozenset()))
        greedy = h.pki.sub_ca(
            "greedy", Policy(1, frozenset({0}), 1024, None, frozenset()), parent=alice
        )
        (reply,) = await h.run(h.pki.leaf("x", UnikernelInfo(), via=[greedy, alice]))
        fine = h.pki.sub_ca("fine", Policy(1, frozenset({0}), 32, None, frozenset()), parent=alice)
        (ok,) = await h.run(h.pki.leaf("x", UnikernelInfo(), via=[fine, alice]))
        (listed,) = await h.run(h.pki.leaf(".", PolicyInfo(), via=[alice]))
    assert reply.header == Header(ROOT, 0, 5)
    assert reply.payload == Failure(
        "policy above allows 64 MB memory, which is fewer than 1024 MB: the policy of"
        " alice:greedy: in the certificate chain is not within the policy of alice:"
    )
    assert ok.payload == UnikernelInfoList(())
    assert isinstance(listed.payload, PolicyList)
    listed_names = [str(name) for name, _ in listed.payload.policies]
    assert any("fine" in name for name in listed_names)
    assert not any("greedy" in name for name in listed_names)  # nothing half-inserted
