"""Issue 6 attacks through the real endpoint (TLS, authorisation, security gate) and the stand-in.

Each test first shows the legitimate use working, then the attack, which albatross
(and a naive endpoint that checks only the unikernel's own path, trusts every
still-valid certificate, and executes a leaf as often as it is presented) would
carry out, refused with the reason naming the hop and field.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import trio

from core.wire import (
    ROOT,
    BlockAdd,
    BlockDeviceList,
    BlockInfo,
    BlockRemove,
    Failure,
    Name,
    NetIf,
    Policy,
    PolicyInfo,
    PolicyList,
    StatsSubscribe,
    StringReply,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelInfo,
    UnikernelInfoList,
)
from standin.images import make_image
from tests.security.rig import failure, now, open_rig, small
from tests.standin.helpers import request

CREATED = StringReply("created unikernel")
DESTROYED = StringReply("destroyed unikernel")


def with_network() -> UnikernelCreate:
    """A create of an image with network device service0 on bridge service."""
    image = make_image(nets=["service0"])
    bridges = frozenset({NetIf("service0", "service")})
    return UnikernelCreate(
        UnikernelConfig(image, memory=32, cpuids=frozenset({0}), bridges=bridges)
    )


async def names_on_host(socket: Path) -> list[str]:
    reply = await request(socket, ROOT, UnikernelInfo())
    assert isinstance(reply, UnikernelInfoList), reply
    return sorted(str(name) for name, _ in reply.unikernels)


# -- (a) quotas cannot be multiplied by sub-delegation -------------------------------------


async def test_sub_delegations_cannot_multiply_a_quota(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        alice = rig.delegate(rig.root, "alice", small(unikernels=1))
        bob = rig.delegate(alice, "bob", small(unikernels=1))
        carol = rig.delegate(alice, "carol", small(unikernels=1))
        assert await rig.send(bob, "b1", rig.create()) == CREATED
        refused = failure(await rig.send(carol, "c1", rig.create()))
        assert refused == (
            "maximum amount of unikernels (1) reached in the whole subtree of delegation alice:"
            " (certificate CN alice), field unikernels (limit 1, used 1, requested 1)"
        )
        # carol's own policy (1) had room: only alice's subtree count refuses it
        assert await names_on_host(rig.standin.socket("vmmd")) == ["alice:bob:b1"]


async def test_parallel_creates_exactly_one_succeeds(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        alice = rig.delegate(rig.root, "alice", small(unikernels=1))
        bob = rig.delegate(alice, "bob", small(unikernels=1))
        carol = rig.delegate(alice, "carol", small(unikernels=1))
        replies: list[object] = []

        async def create(ca: object, cn: str) -> None:
            replies.append(await rig.send(ca, cn, rig.create()))  # type: ignore[arg-type]

        async with trio.open_nursery() as nursery:
            for index in range(3):
                nursery.start_soon(create, bob, f"b{index}")
                nursery.start_soon(create, carol, f"c{index}")
        created = [r for r in replies if r == CREATED]
        refused = [r for r in replies if isinstance(r, Failure)]
        assert (len(created), len(refused)) == (1, 5), replies
        assert all("delegation alice:" in r.message for r in refused), refused
        assert len(await names_on_host(rig.standin.socket("vmmd"))) == 1


# -- (b) the host's own limits hold -----------------------------------------------------


async def test_usage_never_exceeds_the_root_policy(tmp_path: Path) -> None:
    async with open_rig(tmp_path, memory=128) as rig:  # the host has 128 MB
        # over-commitment on paper is allowed: 2 x 128 MB promised on a 128 MB host
        alice = rig.delegate(rig.root, "alice", small(unikernels=2, memory=128))
        dave = rig.delegate(rig.root, "dave", small(unikernels=2, memory=128))
        assert await rig.send(alice, "a1", rig.create(memory=96)) == CREATED
        refused = failure(await rig.send(dave, "d1", rig.create(memory=64)))
        assert refused == (
            "maximum allowed memory (128, used 96) would be exceeded (requesting 64) in the whole"
            " subtree of host (root policy), field memory (limit 128, used 96, requested 64)"
        )
        assert await rig.send(dave, "d1", rig.create(memory=32)) == CREATED
        # a delegation promising more than the host has (albatross accepts it): only what
        # would actually exceed the host is refused, with the host's numbers
        eve = rig.delegate(rig.root, "eve", small(unikernels=1, memory=1024))
        refused = failure(await rig.send(eve, "e1", rig.create(memory=16)))
        assert refused == (
            "maximum allowed memory (128, used 128) would be exceeded (requesting 16) in the whole"
            " subtree of host (root policy), field memory (limit 128, used 128, requested 16)"
        )
        assert await rig.send(dave, "d1", UnikernelDestroy()) == DESTROYED
        assert await rig.send(eve, "e1", rig.create(memory=16)) == CREATED
        assert await names_on_host(rig.standin.socket("vmmd")) == ["alice:a1", "eve:e1"]


async def test_a_delegation_naming_what_the_host_lacks_still_works(tmp_path: Path) -> None:
    # alice's policy names bridge service and CPU 7; the host (like albatrossd started
    # before any bridge existed) has neither.  albatross accepts such a policy and runs
    # her unikernels without a network; only a request for what is missing is refused.
    async with open_rig(tmp_path, bridges=()) as rig:
        vmmd = rig.standin.socket("vmmd")
        reply = await request(vmmd, ROOT, PolicyInfo())
        assert isinstance(reply, PolicyList)
        host = dict(reply.policies)[ROOT]
        assert (host.bridges, host.cpuids) == (frozenset(), frozenset({0, 1}))
        alice = rig.delegate(rig.root, "alice", Policy(2, frozenset({0, 7}), 64, None,
                                                       frozenset({"service"})))  # fmt: skip
        bob = rig.delegate(alice, "bob", Policy(1, frozenset({0}), 32, None,
                                                frozenset({"service"})))  # fmt: skip
        assert await rig.send(alice, "a1", rig.create()) == CREATED
        assert await rig.send(bob, "b1", rig.create()) == CREATED
        assert await names_on_host(vmmd) == ["alice:a1", "alice:bob:b1"]
        assert await rig.send(alice, "a1", UnikernelDestroy()) == DESTROYED
        assert await rig.send(bob, "b1", UnikernelDestroy()) == DESTROYED
        net = with_network()
        assert failure(await rig.send(alice, "n1", net)) == (
            "bridges service not allowed by policy: bridge service is not present on this host"
            " (the host's bridges: none; albatrossd finds the bridges when it starts)"
        )
        on_cpu7 = UnikernelCreate(UnikernelConfig(rig.image, memory=32, cpuids=frozenset({7})))
        assert failure(await rig.send(alice, "c7", on_cpu7)) == (
            "CPUids 7 are not allowed by policy: CPU id 7 is not present on this host"
            " (the host's CPU ids: 0, 1)"
        )
        assert await names_on_host(vmmd) == []
        # the bridge is made and albatrossd restarted: the same request now works
        await rig.standin.restart(bridges=("service",))
        assert await rig.send(alice, "n1", net) == CREATED
        assert await names_on_host(vmmd) == ["alice:n1"]


# -- (c) no name collisions ---------------------------------------------------------------


async def test_a_dot_leaf_cannot_reach_the_operators_objects(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        vmmd = rig.standin.socket("vmmd")
        alice = rig.delegate(rig.root, "alice", small(unikernels=2, memory=128, block=50))
        # the operator's own unikernel and block device named "alice", and alice's own one
        assert await rig.send(rig.root, "alice", rig.create()) == CREATED
        assert await rig.send(rig.root, "alice", BlockAdd(10)) == StringReply("added block device")
        assert await rig.send(alice, "mine", rig.create()) == CREATED
        for command, what in (
            (BlockRemove(), "block remove"),
            (UnikernelDestroy(), "unikernel destroy"),
        ):
            for cn in (".", ":"):
                refused = failure(await rig.send(alice, cn, command))
                assert refused.startswith(f"{what} needs a unikernel or block name"), refused
                assert "names the path alice:" in refused
        assert await names_on_host(vmmd) == [":alice", "alice:mine"]
        # alice's listing at her path shows her unikernel only, not the operator's :alice
        listing = await rig.send(alice, ".", UnikernelInfo())
        assert isinstance(listing, UnikernelInfoList)
        assert [str(n) for n, _ in listing.unikernels] == [":mine"]
        blocks = await rig.send(alice, ".", BlockInfo())
        assert isinstance(blocks, BlockDeviceList) and blocks.devices == ()
        # the attack is real: at the daemon, the path-only name reaches the operator's block
        assert await request(vmmd, Name(("alice",), None), BlockRemove()) == StringReply(
            "removed block"
        )


# -- (d) policy anti-rollback --------------------------------------------------------------


async def test_an_older_delegation_cannot_restore_a_larger_policy(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        start = now()
        old = rig.delegate(
            rig.root,
            "alice",
            small(unikernels=3, memory=96),
            not_before=start - dt.timedelta(hours=2),
        )
        new = rig.delegate(
            rig.root,
            "alice",
            small(unikernels=1, memory=32),
            not_before=start - dt.timedelta(hours=1),
        )
        # before the re-issued certificate is used, the old one still works
        assert isinstance(await rig.send(old, ".", UnikernelInfo()), UnikernelInfoList)
        assert isinstance(await rig.send(new, ".", UnikernelInfo()), UnikernelInfoList)
        expected = (
            f"delegation alice: (certificate CN alice, serial {old.cert.serial_number:x}, "
            "valid from "
        )
        assert await rig.send(new, "a0", rig.create(memory=16)) == CREATED
        for _restart in range(2):  # also after the endpoint restarted (state read from its file)
            refused = failure(await rig.send(old, "a2", rig.create()))
            assert refused.startswith(expected), refused
            assert (
                "older than the newest one seen for that path "
                f"(serial {new.cert.serial_number:x}" in refused
            )
            # read-only commands too: every command re-inserts the chain's policies
            assert failure(await rig.send(old, ".", UnikernelInfo())).startswith(expected)
            # the new certificate's smaller policy holds: one unikernel
            assert "maximum amount of unikernels (1)" in failure(
                await rig.send(new, "a1", rig.create(memory=16))
            )
            await rig.restart()
        # the daemon holds the new, smaller policy
        assert await names_on_host(rig.standin.socket("vmmd")) == ["alice:a0"]


async def test_a_dot_leaf_cannot_watch_the_operators_unikernel(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        alice = rig.delegate(rig.root, "alice", small(unikernels=2, memory=128))
        assert await rig.send(rig.root, "alice", rig.create()) == CREATED
        refused = failure(await rig.send(alice, ".", StatsSubscribe()))
        assert refused.startswith(
            "stats subscribe at the path alice: would also report (and take over the "
            "subscription of) the unikernel :alice one level up"
        ), refused
        # without the operator's twin, the subscription for her whole path is served
        assert await rig.send(rig.root, "alice", UnikernelDestroy()) == StringReply(
            "destroyed unikernel"
        )
        client = await rig.harness.connect(rig.identity(alice, ".", StatsSubscribe()))
        assert (await client.read_one()).payload == StringReply("subscribed")
        await client.tls.aclose()
