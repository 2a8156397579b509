"""Hypothesis: garbage in gives only our errors; tampering is always found; quotas hold
under any interleaving.  The ``slow`` variants run long (``pytest -m slow``)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.security.pki import policy
from tests.security.test_audit import record
from tlsendpoint.errors import UsageError
from tlsendpoint.security.audit import AuditError, AuditLog, verify
from tlsendpoint.security.quota import (
    Demand,
    QuotaError,
    Usage,
    _Running,
)
from tlsendpoint.security.replay import ReplayGuard
from tlsendpoint.security.reservations import Reservation, Reservations
from tlsendpoint.security.revocation import RevocationError, parse_crl
from tlsendpoint.security.rollback import RollbackGuard
from tlsendpoint.wire import Name

FS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)


@FS
@given(data=st.binary(max_size=2000))
def test_verify_garbage_gives_only_audit_errors(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "garbage.log"
    path.write_bytes(data)
    with contextlib.suppress(AuditError):
        verify(path)


@FS
@given(data=st.binary(max_size=2000))
def test_state_files_garbage_gives_only_our_errors(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "rollback.json").write_bytes(data)
    with contextlib.suppress(UsageError):
        RollbackGuard(tmp_path / "rollback.json")
    (tmp_path / "replay.journal").write_bytes(data)
    ReplayGuard(tmp_path / "replay.journal", fsync=False).close()  # bad lines are skipped
    with contextlib.suppress(RevocationError):
        parse_crl(data, "crl")


def tampered(lines: list[bytes], kind: str, i: int, j: int, bit: int) -> list[bytes]:
    out = list(lines)
    i %= len(out)
    if kind == "delete":
        del out[i]
    elif kind == "swap":
        j %= len(out)
        out[i], out[j] = out[j], out[i]
    elif kind == "duplicate":
        out.insert(i, out[i])
    else:
        body = bytearray(out[i])
        pos = bit % (len(body) - 1)  # never the newline
        body[pos] ^= 1 << (bit % 7)
        out[i] = bytes(body)
    return out


def check_tamper(tmp_path: Path, count: int, kind: str, i: int, j: int, bit: int) -> None:
    path = tmp_path / f"audit-{kind}-{count}-{i}-{j}-{bit}.log"
    log = AuditLog(path)
    head = ""
    for n in range(count):
        head = log.append(record(n, reason=f"r{n}")).head
    log.close()
    lines = path.read_bytes().splitlines(keepends=True)
    changed = tampered(lines, kind, i, j, bit)
    if changed == lines:
        return  # swapping a line with itself changes nothing
    path.write_bytes(b"".join(changed))
    with pytest.raises(AuditError):
        verify(path, head=head)


@FS
@given(
    count=st.integers(1, 6),
    kind=st.sampled_from(["delete", "swap", "duplicate", "flip"]),
    i=st.integers(0, 100),
    j=st.integers(0, 100),
    bit=st.integers(0, 10_000),
)
def test_any_single_tampering_is_detected(
    tmp_path: Path, count: int, kind: str, i: int, j: int, bit: int
) -> None:
    check_tamper(tmp_path, count, kind, i, j, bit)


# -- quotas under any interleaving of concurrent requests ---------------------------

ALICE = Name.parse("alice:")
POLICIES = [(ALICE, policy(unikernels=2, memory=100))]
STEPS = st.lists(st.tuples(st.sampled_from(["start", "reserve", "finish"]), st.integers(0, 3)),
                 max_size=60)  # fmt: skip


@dataclass
class Conn:
    snapshot: int
    usage: Usage
    name: Name
    held: Reservation | None = None


def run_interleaving(steps: list[tuple[str, int]]) -> None:
    """Connections start (snapshot + usage read), reserve, and finish (daemon applies, release).

    Invariant: what the daemon runs plus what is reserved never exceeds alice's policy.
    """
    book = Reservations()
    running: dict[Name, _Running] = {}
    conns: dict[int, Conn] = {}
    for serial, (action, who) in enumerate(steps):
        conn = conns.get(who)
        if action == "start" and conn is None:
            name = Name.parse(f"alice:b{who % 2}:u{serial}")
            conns[who] = Conn(book.snapshot(), Usage(dict(running), {}), name)
        elif action == "reserve" and conn is not None and conn.held is None:
            try:
                conn.held = book.reserve(
                    conn.snapshot, POLICIES, None, conn.usage, conn.name, Demand(1, 30)
                )
            except QuotaError:
                book.done(conn.snapshot)
                del conns[who]
        elif action == "finish" and conn is not None and conn.held is not None:
            running[conn.name] = _Running(30, frozenset({0}), frozenset())
            book.release(conn.held)
            book.done(conn.snapshot)
            del conns[who]
        active = sum(1 for c in conns.values() if c.held is not None)
        assert len(running) + active <= 2
        assert 30 * (len(running) + active) <= 100


@settings(deadline=None)
@given(steps=STEPS)
def test_reservations_never_let_usage_exceed_the_policy(steps: list[tuple[str, int]]) -> None:
    run_interleaving(steps)


@pytest.mark.slow
@settings(deadline=None, max_examples=20_000)
@given(steps=STEPS)
def test_reservations_long_run(steps: list[tuple[str, int]]) -> None:
    run_interleaving(steps)


def test_interleaving_model_catches_a_naive_check() -> None:
    """The model must fail without reservations: two connections read the same usage."""
    book = Reservations()
    snap = book.snapshot()
    book.reserve(snap, POLICIES, None, Usage(), Name.parse("alice:a:1"), Demand(2, 30))
    with pytest.raises(QuotaError):
        book.reserve(snap, POLICIES, None, Usage(), Name.parse("alice:b:2"), Demand(1, 30))
