"""Several endpoint processes on one host (--workers, inetd, socket activation) share the rules.

The workers are forked after the security state is opened; each opens its own
connection to the store on first use.  These tests fork the same way and show
that what one process recorded binds the other.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from core.authorize import authorize
from core.wire import BlockAdd, UnikernelDestroy
from standin.testing import open_standin
from tests.security.pki import NOW, create, policy, root
from tests.security.test_quota_guard import alice_usage, endpoint_run, query_for
from tlsendpoint.security.process import Security, SecurityOptions
from tlsendpoint.security.rules.auditformat import AuditRecord
from tlsendpoint.security.rules.quota import QuotaError
from tlsendpoint.security.rules.replay import ReplayRefusal, leaf_record
from tlsendpoint.security.rules.rollback import RollbackRefusal, delegations
from tlsendpoint.security.state.auditlog import AuditLog, verify
from tlsendpoint.security.state.records import SecurityStore

_FORK = multiprocessing.get_context("fork")
SECONDS = int(NOW.timestamp())


def in_child(action: Callable[[], None]) -> None:
    """Run *action* in a forked child (like a worker) and require it to succeed."""
    child = _FORK.Process(target=action)
    child.start()
    child.join(30)
    assert child.exitcode == 0


def opened(tmp_path: Path) -> SecurityStore:
    store = SecurityStore(tmp_path / "security.db")
    store.open()
    return store


def test_a_leaf_used_in_one_worker_is_refused_in_another(tmp_path: Path) -> None:
    alice = root().delegate("alice", policy())
    chain = alice.leaf_chain("a1", UnikernelDestroy(), seconds=3600)
    record = leaf_record(chain[0], "alice")
    store = opened(tmp_path)  # opened before the fork, as the endpoint does
    assert not store.leaf_used(record.key)  # and with a connection open: the child needs its own
    in_child(lambda: store.record_leaf(record, SECONDS))
    with pytest.raises(ReplayRefusal, match="already executed"):
        store.record_leaf(record, SECONDS)


def test_of_processes_racing_with_one_leaf_exactly_one_records_it(tmp_path: Path) -> None:
    alice = root().delegate("alice", policy())
    record = leaf_record(alice.leaf_chain("a1", UnikernelDestroy())[0], "alice")
    store = opened(tmp_path)
    store.ready()
    start = _FORK.Event()
    outcomes = _FORK.Queue()

    def race() -> None:
        start.wait(30)
        try:
            store.record_leaf(record, SECONDS)
            outcomes.put("recorded")
        except ReplayRefusal:
            outcomes.put("refused")

    children = [_FORK.Process(target=race) for _ in range(4)]
    for child in children:
        child.start()
    start.set()
    results = sorted(outcomes.get(timeout=30) for _ in children)
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    assert results == ["recorded", "refused", "refused", "refused"]


def test_a_newer_delegation_seen_by_one_worker_binds_another(tmp_path: Path) -> None:
    ca = root()
    old = ca.delegate("alice", policy(unikernels=10), now=NOW.replace(month=10))
    new = ca.delegate("alice", policy(unikernels=1), now=NOW)
    store = opened(tmp_path)
    assert store.record_delegations(delegations(old.leaf_chain("a1", create())), SECONDS)

    def record_new() -> None:
        assert store.record_delegations(delegations(new.leaf_chain("a1", create())), SECONDS)

    in_child(record_new)
    with pytest.raises(RollbackRefusal, match="older than the newest one seen"):
        store.record_delegations(delegations(old.leaf_chain("a1", create())), SECONDS)


@pytest.mark.parametrize("shared", [False, True])
async def test_two_processes_cannot_both_spend_the_last_quota(tmp_path: Path, shared: bool) -> None:
    alice = root().delegate("alice", policy(block=100))
    bob = authorize(alice.delegate("bob", policy(block=100)).leaf_chain("d", BlockAdd(60)))
    carol = authorize(alice.delegate("carol", policy(block=100)).leaf_chain("d", BlockAdd(60)))
    # two endpoint processes: separate reservation books, one state directory
    workers = [
        Security(SecurityOptions(tmp_path / "sec", root().cert, shared=shared)) for _ in range(2)
    ]
    granted: list[str] = []
    async with open_standin(tmp_path) as standin:
        query = query_for(standin)

        async def run(security: Security, who: str, request: object) -> None:
            try:
                async with security.quota.guard(request, query):  # type: ignore[arg-type]
                    await trio.sleep(0.01)  # let the other process check meanwhile
                    await endpoint_run(standin, request)  # type: ignore[arg-type]
                    granted.append(who)
            except QuotaError:
                pass

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, workers[0], "bob", bob)
            nursery.start_soon(run, workers[1], "carol", carol)
        used = await alice_usage(standin)
    # without the lock each process sees alice's 100 MB free and both get 60 MB
    assert (len(granted), used) == ((1, 60) if shared else (2, 120))


def test_workers_append_to_one_audit_chain(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")  # opened before the fork, as the endpoint does

    def append_many() -> None:
        for index in range(150):
            log.append(AuditRecord(NOW, f"peer-{index}", [], None, None, "allow", "ok", 0.001))

    children = [_FORK.Process(target=append_many) for _ in range(3)]
    for child in children:
        child.start()
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    assert verify(tmp_path / "audit.log").lines == 450
