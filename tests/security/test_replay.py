"""Replay protection: a state-changing leaf executes once during its validity (issue 6.6)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tests.security.pki import NOW, create, policy, root
from tlsendpoint.authorize import authorize
from tlsendpoint.security.replay import STATE_CHANGING, ReplayGuard, ReplayRefusal
from tlsendpoint.wire import (
    BlockDump,
    BlockInfo,
    BlockRemove,
    ConsoleSubscribe,
    UnikernelDestroy,
    UnikernelGet,
    UnikernelInfo,
)

DAY = dt.timedelta(days=1)


def test_replayed_destroy_leaf_is_refused(tmp_path: Path) -> None:
    alice = root().delegate("alice", policy())
    chain = alice.leaf_chain("a1", UnikernelDestroy(), seconds=86400)  # a `sign`ed 1-day leaf
    guard = ReplayGuard(tmp_path / "replay.journal")
    first = authorize(chain)
    guard.check_and_record(chain[0], first.command, "alice", NOW)
    assert authorize(chain) == first  # albatross would run it again
    with pytest.raises(ReplayRefusal) as caught:
        guard.check_and_record(
            chain[0], authorize(chain).command, "alice", NOW + dt.timedelta(hours=1)
        )
    assert caught.value.message.startswith(
        f"leaf certificate CN=a1 (serial {chain[0].serial_number:x}) already executed "
        "a state-changing command"
    )
    assert "sign a new leaf certificate for each command" in caught.value.message


def test_fresh_leaf_per_command_and_read_only_commands_are_unaffected(tmp_path: Path) -> None:
    alice = root().delegate("alice", policy())
    guard = ReplayGuard(tmp_path / "replay.journal")
    for _ in range(3):  # albatross-client mints a new leaf each time
        chain = alice.leaf_chain("a1", create())
        guard.check_and_record(chain[0], create(), "alice", NOW)
    for command in (
        UnikernelInfo(),
        BlockInfo(),
        UnikernelGet(0),
        BlockDump(0),
        ConsoleSubscribe(count=10),
    ):
        chain = alice.leaf_chain("a1", command)
        guard.check_and_record(chain[0], command, "alice", NOW)
        guard.check_and_record(chain[0], command, "alice", NOW)
    assert len(guard) == 3


def test_record_survives_restart_and_torn_line(tmp_path: Path) -> None:
    alice = root().delegate("alice", policy())
    chain = alice.leaf_chain("a1", BlockRemove(), seconds=3600)
    guard = ReplayGuard(tmp_path / "replay.journal")
    guard.check_and_record(chain[0], BlockRemove(), "alice", NOW)
    guard.close()
    with (tmp_path / "replay.journal").open("ab") as handle:
        handle.write(b"deadbeef 12")  # crash mid-write
    restarted = ReplayGuard(tmp_path / "replay.journal")
    with pytest.raises(ReplayRefusal):
        restarted.check_and_record(chain[0], BlockRemove(), "alice", NOW)
    assert len(restarted) == 1


def test_key_is_issuer_and_serial(tmp_path: Path) -> None:
    ca = root()
    alice, bob = ca.delegate("alice", policy()), ca.delegate("bob", policy())
    guard = ReplayGuard(tmp_path / "replay.journal")
    a = alice.leaf_chain("x", UnikernelDestroy())[0]
    b = bob.leaf_chain("x", UnikernelDestroy())[0]
    guard.check_and_record(a, UnikernelDestroy(), "alice", NOW)
    guard.check_and_record(b, UnikernelDestroy(), "bob", NOW)  # other issuer: a different leaf


def test_one_delegate_cannot_exhaust_the_record_for_others(tmp_path: Path) -> None:
    ca = root()
    alice, bob = ca.delegate("alice", policy()), ca.delegate("bob", policy())
    guard = ReplayGuard(tmp_path / "replay.journal", max_entries=10, max_per_owner=3, fsync=False)
    for _ in range(3):
        guard.check_and_record(
            alice.leaf_chain("a", create(), seconds=86400)[0], create(), "alice", NOW
        )
    with pytest.raises(
        ReplayRefusal, match="too many unexpired state-changing leaf certificates under alice"
    ):
        guard.check_and_record(alice.leaf_chain("a", create())[0], create(), "alice", NOW)
    guard.check_and_record(bob.leaf_chain("b", create())[0], create(), "bob", NOW)
    # once alice's leaves expired, she may go on
    guard.check_and_record(
        alice.leaf_chain("a", create(), seconds=86400)[0], create(), "alice", NOW + 2 * DAY
    )


def test_total_bound_refuses_rather_than_forgets(tmp_path: Path) -> None:
    alice = root().delegate("alice", policy())
    guard = ReplayGuard(tmp_path / "replay.journal", max_entries=2, fsync=False)
    kept = alice.leaf_chain("a", create(), seconds=86400)[0]
    guard.check_and_record(kept, create(), "alice", NOW)
    guard.check_and_record(alice.leaf_chain("a", create())[0], create(), "x", NOW)
    with pytest.raises(ReplayRefusal, match="the replay record is full"):
        guard.check_and_record(alice.leaf_chain("a", create())[0], create(), "y", NOW)
    with pytest.raises(ReplayRefusal, match="already executed"):
        guard.check_and_record(kept, create(), "alice", NOW)


def test_journal_is_compacted(tmp_path: Path) -> None:
    alice = root().delegate("alice", policy())
    guard = ReplayGuard(tmp_path / "replay.journal", fsync=False)
    for i in range(1500):  # each leaf lives 300 s; we move on a minute per command
        now = NOW + dt.timedelta(minutes=i)
        guard.check_and_record(alice.leaf_chain("a", create(), now=now)[0], create(), "alice", now)
    lines = (tmp_path / "replay.journal").read_bytes().count(b"\n")
    assert len(guard) <= 6
    assert lines <= 2 * len(guard) + 1001


def test_state_changing_table() -> None:
    names = {t.__name__ for t in STATE_CHANGING}
    assert names == {
        "UnikernelCreate",
        "UnikernelDestroy",
        "UnikernelRestart",
        "BlockAdd",
        "BlockRemove",
        "BlockSet",
        "BlockAddOld",
        "BlockSetOld",
    }
