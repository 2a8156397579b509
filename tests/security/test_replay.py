"""Replay protection: a state-changing leaf executes once during its validity (issue 6.6).

The rules (rules/replay.py) through the store that keeps the records (state/records.py).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509

from ca.keys import _hash_for
from ca.profiles import PrivateKey
from core.authorize import authorize
from core.wire import (
    BlockDump,
    BlockInfo,
    BlockRemove,
    Command,
    ConsoleSubscribe,
    UnikernelDestroy,
    UnikernelGet,
    UnikernelInfo,
)
from tests.security.pki import NOW, create, policy, root
from tlsendpoint.security.rules.replay import (
    STATE_CHANGING,
    ReplayBounds,
    ReplayRefusal,
    is_state_changing,
    leaf_record,
    replay_key,
)
from tlsendpoint.security.state.records import SecurityStore

DAY = dt.timedelta(days=1)


def opened(tmp_path: Path, bounds: ReplayBounds | None = None) -> SecurityStore:
    store = SecurityStore(tmp_path / "security.db", replay_bounds=bounds or ReplayBounds())
    store.open()
    return store


def record(
    store: SecurityStore, leaf: x509.Certificate, command: Command, owner: str, now: dt.datetime
) -> None:
    """What the endpoint does for a leaf: state-changing ones are recorded, others pass."""
    if is_state_changing(command):
        store.record_leaf(leaf_record(leaf, owner), int(now.timestamp()))


def test_replayed_destroy_leaf_is_refused(tmp_path: Path) -> None:
    alice = root().delegate("alice", policy())
    chain = alice.leaf_chain("a1", UnikernelDestroy(), seconds=86400)  # a `sign`ed 1-day leaf
    store = opened(tmp_path)
    first = authorize(chain)
    record(store, chain[0], first.command, "alice", NOW)
    assert authorize(chain) == first  # albatross would run it again
    with pytest.raises(ReplayRefusal) as caught:
        record(store, chain[0], authorize(chain).command, "alice", NOW + dt.timedelta(hours=1))
    assert caught.value.message.startswith(
        f"leaf certificate CN=a1 (serial {chain[0].serial_number:x}) already executed "
        "a state-changing command"
    )
    assert "sign a new leaf certificate for each command" in caught.value.message
    assert store.leaf_used(replay_key(chain[0]))


def test_fresh_leaf_per_command_and_read_only_commands_are_unaffected(tmp_path: Path) -> None:
    alice = root().delegate("alice", policy())
    store = opened(tmp_path)
    for _ in range(3):  # albatross-client mints a new leaf each time
        chain = alice.leaf_chain("a1", create())
        record(store, chain[0], create(), "alice", NOW)
    for command in (
        UnikernelInfo(),
        BlockInfo(),
        UnikernelGet(0),
        BlockDump(0),
        ConsoleSubscribe(count=10),
    ):
        chain = alice.leaf_chain("a1", command)
        record(store, chain[0], command, "alice", NOW)
        record(store, chain[0], command, "alice", NOW)
    assert store.counts().replay == 3


def test_record_survives_restart(tmp_path: Path) -> None:
    alice = root().delegate("alice", policy())
    chain = alice.leaf_chain("a1", BlockRemove(), seconds=3600)
    store = opened(tmp_path)
    record(store, chain[0], BlockRemove(), "alice", NOW)
    store.close()
    restarted = opened(tmp_path)
    with pytest.raises(ReplayRefusal):
        record(restarted, chain[0], BlockRemove(), "alice", NOW)
    assert restarted.counts().replay == 1


def _reissued(leaf: x509.Certificate, issuer_key: PrivateKey, serial: int) -> x509.Certificate:
    """*leaf* signed again with *serial*: two issuers can hand out the same serial."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(leaf.subject)
        .issuer_name(leaf.issuer)
        .public_key(leaf.public_key())
        .serial_number(serial)
        .not_valid_before(leaf.not_valid_before_utc)
        .not_valid_after(leaf.not_valid_after_utc)
    )
    for extension in leaf.extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    return builder.sign(issuer_key, _hash_for(issuer_key))


def test_key_is_issuer_and_serial(tmp_path: Path) -> None:
    ca = root()
    alice, bob = ca.delegate("alice", policy()), ca.delegate("bob", policy())
    serial = 0x1234567
    a = _reissued(alice.leaf_chain("x", UnikernelDestroy())[0], alice.key, serial)
    b = _reissued(bob.leaf_chain("x", UnikernelDestroy())[0], bob.key, serial)
    again = _reissued(alice.leaf_chain("y", UnikernelDestroy())[0], alice.key, serial)
    assert a.serial_number == b.serial_number == again.serial_number
    # same serial under another issuer: a different leaf, a different record
    assert replay_key(a) != replay_key(b)
    assert replay_key(a) == replay_key(again)  # same issuer and serial: the same leaf to X.509
    store = opened(tmp_path)
    record(store, a, UnikernelDestroy(), "alice", NOW)
    record(store, b, UnikernelDestroy(), "bob", NOW)
    other = _reissued(alice.leaf_chain("x", UnikernelDestroy())[0], alice.key, serial + 1)
    record(store, other, UnikernelDestroy(), "alice", NOW)  # same issuer, other serial
    assert store.counts().replay == 3
    with pytest.raises(ReplayRefusal, match="already executed"):
        record(store, again, UnikernelDestroy(), "alice", NOW)


def test_one_delegate_cannot_exhaust_the_record_for_others(tmp_path: Path) -> None:
    ca = root()
    alice, bob = ca.delegate("alice", policy()), ca.delegate("bob", policy())
    store = opened(tmp_path, ReplayBounds(max_entries=10, max_per_owner=3))
    for _ in range(3):
        record(store, alice.leaf_chain("a", create(), seconds=86400)[0], create(), "alice", NOW)
    with pytest.raises(
        ReplayRefusal, match="too many unexpired state-changing leaf certificates under alice"
    ):
        record(store, alice.leaf_chain("a", create())[0], create(), "alice", NOW)
    record(store, bob.leaf_chain("b", create())[0], create(), "bob", NOW)
    # once alice's leaves expired, she may go on
    later = NOW + 2 * DAY
    record(store, alice.leaf_chain("a", create(), seconds=86400)[0], create(), "alice", later)


def test_total_bound_refuses_rather_than_forgets(tmp_path: Path) -> None:
    alice = root().delegate("alice", policy())
    store = opened(tmp_path, ReplayBounds(max_entries=2))
    kept = alice.leaf_chain("a", create(), seconds=86400)[0]
    record(store, kept, create(), "alice", NOW)
    record(store, alice.leaf_chain("a", create())[0], create(), "x", NOW)
    with pytest.raises(ReplayRefusal, match="the replay record is full"):
        record(store, alice.leaf_chain("a", create())[0], create(), "y", NOW)
    with pytest.raises(ReplayRefusal, match="already executed"):
        record(store, kept, create(), "alice", NOW)


def test_expired_records_go(tmp_path: Path) -> None:
    alice = root().delegate("alice", policy())
    store = opened(tmp_path)
    for i in range(50):  # each leaf lives 300 s; we move on a minute per command
        now = NOW + dt.timedelta(minutes=i)
        record(store, alice.leaf_chain("a", create(), now=now)[0], create(), "alice", now)
    assert store.counts().replay <= 6


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
