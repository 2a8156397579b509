"""No name collisions: a "." leaf of delegate alice cannot reach the operator's ``:alice`` (6.3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.authorize import authorize
from core.wire import (
    BlockAdd,
    BlockDeviceEntry,
    BlockDeviceList,
    BlockInfo,
    BlockRemove,
    Name,
    PolicyAdd,
    StringReply,
    UnikernelDestroy,
    UnikernelInfo,
    UnikernelInfoList,
)
from standin.testing import open_standin
from tests.security.pki import create, policy, root
from tests.standin.helpers import request
from tlsendpoint.security.rules.naming import NameRefusal, check_object_name, filter_listing


async def test_dot_leaf_would_remove_the_parents_block_and_is_refused(tmp_path: Path) -> None:
    alice = root().delegate("alice", policy())
    attack = authorize(alice.leaf_chain(".", BlockRemove()))
    assert attack.name == Name.parse("alice:")
    async with open_standin(tmp_path) as standin:
        vmmd = standin.socket("vmmd")
        assert await request(vmmd, Name.parse(":alice"), BlockAdd(5)) == StringReply(
            "added block device"
        )  # the operator's own block
        for path, pol in attack.policies:
            await request(vmmd, path, PolicyAdd(pol))
        listing = await request(vmmd, attack.name, BlockInfo())
        assert isinstance(listing, BlockDeviceList) and len(listing.devices) == 1  # it leaks
        assert filter_listing(attack.name, listing) == BlockDeviceList(())
        with pytest.raises(NameRefusal) as caught:
            check_object_name(attack)
        assert caught.value.message.startswith(
            "block remove needs a unikernel or block name, but the leaf certificate names the "
            "path alice: (CN '.', ':' or none)"
        )
        # what albatross (and the stand-in) would do without the rule:
        assert await request(vmmd, attack.name, BlockRemove()) == StringReply("removed block")


@pytest.mark.parametrize("cn", [".", ":"])
def test_single_object_commands_need_a_name(cn: str) -> None:
    alice = root().delegate("alice", policy())
    for command in (UnikernelDestroy(), create(), BlockAdd(1)):
        with pytest.raises(NameRefusal):
            check_object_name(authorize(alice.leaf_chain(cn, command)))


def test_named_objects_and_path_listings_still_work() -> None:
    alice = root().delegate("alice", policy())
    check_object_name(authorize(alice.leaf_chain("a1", UnikernelDestroy())))
    check_object_name(authorize(alice.leaf_chain(".", UnikernelInfo())))
    check_object_name(authorize(root().leaf_chain("a1", UnikernelDestroy())))  # operator's :a1


def test_listing_filter_keeps_the_delegates_own_objects() -> None:
    own = BlockDeviceEntry(Name.parse(":disk"), 1, False)
    parents = BlockDeviceEntry(Name.parse(":"), 5, False)
    listing = BlockDeviceList((parents, own))
    assert filter_listing(Name.parse("alice:"), listing) == BlockDeviceList((own,))
    assert filter_listing(Name.parse(":"), listing) == listing  # root has no parent
    assert filter_listing(Name.parse("alice:"), UnikernelInfoList(())) == UnikernelInfoList(())


def test_stats_at_a_path_is_refused_only_while_the_parents_twin_runs() -> None:
    from core.wire import StatsSubscribe
    from tlsendpoint.security.rules.naming import check_stats_path, parents_object

    alice = root().delegate("alice", policy())
    at_path = authorize(alice.leaf_chain(".", StatsSubscribe()))
    assert parents_object(at_path) == Name.parse(":alice")
    check_stats_path(at_path, [Name.parse("alice:a1"), Name.parse(":bob")])
    with pytest.raises(NameRefusal, match="the unikernel :alice one level up"):
        check_stats_path(at_path, [Name.parse("alice:a1"), Name.parse(":alice")])
    named = authorize(alice.leaf_chain("a1", StatsSubscribe()))
    assert parents_object(named) is None
    assert parents_object(authorize(root().leaf_chain(".", StatsSubscribe()))) is None
