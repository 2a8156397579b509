"""Policy anti-rollback: an older delegation for a path cannot restore its policy (issue 6.4)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography import x509

from core.authorize import authorize
from core.wire import Name
from tests.security.pki import NOW, Ca, create, policy, root
from tlsendpoint.security.rules.rollback import RollbackRefusal, check, delegations
from tlsendpoint.security.state.legacy import OldFileDamaged, read_rollback
from tlsendpoint.security.state.records import SecurityStore

DAY = dt.timedelta(days=1)


class Guard:
    """The anti-rollback table as the endpoint uses it: the rules over the store."""

    def __init__(self, directory: Path, max_entries: int = 100_000) -> None:
        self.store = SecurityStore(directory / "security.db", rollback_max=max_entries)
        self.store.open()

    def check_and_record(self, chain: Sequence[x509.Certificate], now: dt.datetime) -> bool:
        return self.store.record_delegations(delegations(chain), int(now.timestamp()))

    def check(self, chain: Sequence[x509.Certificate]) -> None:
        check(delegations(chain), self.store.all_seen())

    def __len__(self) -> int:
        return self.store.counts().rollback


def reissued(ca: Ca) -> tuple[Ca, Ca]:
    """alice's first intermediate (10 unikernels) and the re-issue a month later (1)."""
    old = ca.delegate("alice", policy(unikernels=10), now=NOW - 30 * DAY)
    new = ca.delegate("alice", policy(unikernels=1), now=NOW)
    return old, new


def test_older_intermediate_cannot_restore_a_larger_policy(tmp_path: Path) -> None:
    old, new = reissued(root())
    old_chain = old.leaf_chain("a1", create())
    assert authorize(old_chain).policies[0][1].unikernels == 10  # albatross would re-insert 10
    guard = Guard(tmp_path)
    assert guard.check_and_record(new.leaf_chain("a1", create()), NOW)
    with pytest.raises(RollbackRefusal) as caught:
        guard.check_and_record(old_chain, NOW)
    serial = old.cert.serial_number
    assert caught.value.message.startswith(
        f"delegation alice: (certificate CN alice, serial {serial:x}, valid from "
    )
    assert "is older than the newest one seen for that path" in caught.value.message


def test_the_memory_survives_a_restart(tmp_path: Path) -> None:
    old, new = reissued(root())
    first = Guard(tmp_path)
    first.check_and_record(new.leaf_chain("a", create()), NOW)
    first.store.close()
    restarted = Guard(tmp_path)
    with pytest.raises(RollbackRefusal):
        restarted.check(old.leaf_chain("a1", create()))
    restarted.store.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [".security.db.verified", "security.db"]  # the check stamp, no temporaries


def test_same_and_newer_delegations_are_accepted(tmp_path: Path) -> None:
    old, new = reissued(root())
    guard = Guard(tmp_path)
    guard.check_and_record(old.leaf_chain("a1", create()), NOW)
    guard.check_and_record(old.leaf_chain("a2", create()), NOW)  # same certificate again
    guard.check_and_record(new.leaf_chain("a3", create()), NOW)  # the re-issue takes over
    with pytest.raises(RollbackRefusal):
        guard.check_and_record(old.leaf_chain("a4", create()), NOW)


def test_same_start_is_ordered_by_serial(tmp_path: Path) -> None:
    ca = root()
    low = ca.delegate("alice", policy(unikernels=10), serial=100, not_before=NOW)
    high = ca.delegate("alice", policy(unikernels=1), serial=200, not_before=NOW)
    guard = Guard(tmp_path)
    guard.check_and_record(high.leaf_chain("a", create()), NOW)
    with pytest.raises(RollbackRefusal, match="serial 64,"):
        guard.check(low.leaf_chain("a", create()))


def test_deeper_delegations_are_guarded_too(tmp_path: Path) -> None:
    alice = root().delegate("alice", policy())
    old_bob = alice.delegate("bob", policy(unikernels=5), now=NOW - 10 * DAY)
    new_bob = alice.delegate("bob", policy(unikernels=1), now=NOW)
    assert [str(d.path) for d in delegations(new_bob.leaf_chain("b", create()))] == [
        "alice:",
        "alice:bob:",
    ]
    guard = Guard(tmp_path)
    guard.check_and_record(new_bob.leaf_chain("b", create()), NOW)
    with pytest.raises(RollbackRefusal, match="delegation alice:bob: "):
        guard.check_and_record(old_bob.leaf_chain("b", create()), NOW)
    # a different path with the same CN elsewhere is independent
    guard.check_and_record(
        root().delegate("bob", policy(), now=NOW - 99 * DAY).leaf_chain("b", create()), NOW
    )


def test_damaged_old_state_stops_with_advice(tmp_path: Path) -> None:
    (tmp_path / "rollback.json").write_text("{not json")
    with pytest.raises(OldFileDamaged, match="is damaged: restore it from a backup, or move it"):
        read_rollback(tmp_path / "rollback.json")


def test_table_is_bounded_without_evicting_live_records(tmp_path: Path) -> None:
    ca = root()
    guard = Guard(tmp_path, max_entries=2)
    old, new = reissued(ca)
    short = ca.delegate("bob", policy(), days=1)
    guard.check_and_record(new.leaf_chain("a", create()), NOW)
    guard.check_and_record(short.leaf_chain("b", create()), NOW)
    carol = ca.delegate("carol", policy())
    assert not guard.check_and_record(carol.leaf_chain("c", create()), NOW)  # full: not recorded
    assert len(guard) == 2
    # two days later bob's only certificate expired: its record may go, alice's may not
    assert guard.check_and_record(carol.leaf_chain("c", create()), NOW + 2 * DAY)
    assert sorted(guard.store.all_seen()) == ["alice:", "carol:"]
    with pytest.raises(RollbackRefusal):
        guard.check(old.leaf_chain("a", create()))


def test_refused_old_certificate_extends_the_record(tmp_path: Path) -> None:
    ca = root()
    old = ca.delegate("alice", policy(unikernels=10), now=NOW - DAY, days=365)
    new = ca.delegate("alice", policy(unikernels=1), now=NOW, days=1)
    guard = Guard(tmp_path, max_entries=1)
    guard.check_and_record(new.leaf_chain("a", create()), NOW)
    with pytest.raises(RollbackRefusal):
        guard.check_and_record(old.leaf_chain("a", create()), NOW)
    later = NOW + 10 * DAY  # the new certificate expired, the old one did not
    bob = ca.delegate("bob", policy())
    assert not guard.check_and_record(bob.leaf_chain("b", create()), later)
    with pytest.raises(RollbackRefusal):
        guard.check(old.leaf_chain("a", create()))
    assert Name.parse("alice:") in [d.path for d in delegations(old.leaf_chain("a", create()))]
