"""The quota guard and the daemon queries against the daemon stand-in (real usage), the
gate over the per-process state, and the SIGHUP reload.

These tests play the endpoint's part (policy insertion, then the command, on one
vmmd connection, as behaviour.md §2.6 describes) without TLS; the end-to-end
versions through the endpoint are in test_e2e_*.py and test_audit_e2e.py.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import Encoding

from ca.revoke import make_crl
from client import audit_cli as cli
from core.authorize import Request, authorize
from core.pem import encode_certificates
from core.wire import (
    ROOT,
    BlockAdd,
    BlockDeviceList,
    BlockInfo,
    Command,
    Failure,
    Name,
    Payload,
    PolicyAdd,
    StringReply,
    UnikernelDestroy,
    UnikernelInfo,
)
from standin.testing import Standin, open_standin
from tests.security.pki import NOW, create, policy, root
from tests.standin.helpers import Client, request
from tlsendpoint.security import SecurityRefusal
from tlsendpoint.security.daemonquery import Query, daemon_query
from tlsendpoint.security.gate import Gate
from tlsendpoint.security.process import Security, SecurityOptions, reload_on_sighup
from tlsendpoint.security.rules.quota import QuotaError
from tlsendpoint.security.state.auditlog import verify
from tlsendpoint.session import Admit


def query_for(standin: Standin) -> Query:
    sequence = iter(range(1000, 2000))
    return daemon_query(standin.socket("vmmd"), lambda: next(sequence), timeout=10)


async def endpoint_run(standin: Standin, req: Request) -> Payload:
    """What the endpoint does after the checks: insert policies deepest first, then the command."""
    client = await Client.connect(standin.socket("vmmd"))
    try:
        for path, pol in req.policies:
            await client.send(path, PolicyAdd(pol))
            reply = await client.reply()
            assert isinstance(reply, StringReply), reply
        await client.send(req.name, req.command)
        return await client.reply()
    finally:
        await client.close()


def block_requests() -> tuple[Request, Request]:
    alice = root().delegate("alice", policy(block=100))
    bob = alice.delegate("bob", policy(block=100))
    carol = alice.delegate("carol", policy(block=100))
    return (
        authorize(bob.leaf_chain("disk", BlockAdd(60))),
        authorize(carol.leaf_chain("disk", BlockAdd(60))),
    )


async def alice_usage(standin: Standin) -> int:
    reply = await request(standin.socket("vmmd"), ROOT, BlockInfo())
    assert isinstance(reply, BlockDeviceList)
    return sum(e.size for e in reply.devices if e.name.path[:1] == ("alice",))


async def test_without_the_guard_the_daemon_lets_siblings_exceed_their_parent(
    tmp_path: Path,
) -> None:
    bob, carol = block_requests()
    async with open_standin(tmp_path) as standin:
        assert await endpoint_run(standin, bob) == StringReply("added block device")
        assert await endpoint_run(standin, carol) == StringReply("added block device")
        assert await alice_usage(standin) == 120  # alice's 100 MB multiplied


async def test_guard_refuses_with_the_daemons_usage(tmp_path: Path) -> None:
    bob, carol = block_requests()
    security = Security(SecurityOptions(tmp_path / "sec", root().cert))
    async with open_standin(tmp_path) as standin:
        query = query_for(standin)
        async with security.quota.guard(bob, query) as held:
            assert held is not None
            assert await endpoint_run(standin, bob) == StringReply("added block device")
        with pytest.raises(QuotaError) as caught:
            async with security.quota.guard(carol, query):
                raise AssertionError("carol's block must not be checked in")
        assert caught.value.message == (
            "block device policy limit of 100 MB (used 60 MB) would be exceeded by the request "
            "(60 MB) in the whole subtree of delegation alice: (certificate CN alice), field block "
            "(limit 100, used 60, requested 60)"
        )
        assert await alice_usage(standin) == 60
        assert len(security.quota.book) == 0


async def test_concurrent_requests_cannot_slip_past(tmp_path: Path) -> None:
    bob, carol = block_requests()
    security = Security(SecurityOptions(tmp_path / "sec", root().cert))
    outcomes: list[str] = []
    async with open_standin(tmp_path) as standin:
        query = query_for(standin)

        async def run(req: Request) -> None:
            try:
                async with security.quota.guard(req, query):
                    await trio.sleep(0)  # let the other request check meanwhile
                    reply = await endpoint_run(standin, req)
                    outcomes.append("ok" if reply == StringReply("added block device") else "x")
            except QuotaError:
                outcomes.append("refused")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, bob)
            nursery.start_soon(run, carol)
        assert sorted(outcomes) == ["ok", "refused"]
        assert await alice_usage(standin) == 60


async def test_guard_fails_closed_when_the_daemon_does_not_answer_usage(tmp_path: Path) -> None:
    bob, _ = block_requests()
    security = Security(SecurityOptions(tmp_path / "sec", root().cert))

    async def broken(name: Name, command: Command) -> Payload:
        return Failure("no such thing")

    with pytest.raises(SecurityRefusal, match="the daemon answered unikernel info with no such"):
        async with security.quota.guard(bob, broken):
            pass


async def test_read_only_commands_make_no_queries(tmp_path: Path) -> None:
    alice = root().delegate("alice", policy())
    req = authorize(alice.leaf_chain("a1", UnikernelDestroy()))
    security = Security(SecurityOptions(tmp_path / "sec", root().cert))

    async def never(name: Name, command: Command) -> Payload:
        raise AssertionError("no query expected")

    async with security.quota.guard(req, never) as held:
        assert held is None


async def test_the_gate_runs_every_check_and_audits(tmp_path: Path) -> None:
    ca = root()
    alice = ca.delegate("alice", policy())
    crl_dir = tmp_path / "crls"
    crl_dir.mkdir()
    options = SecurityOptions(tmp_path / "sec", ca.cert, crl_dir, tmp_path / "audit.log")
    security = Security(options)
    chain = alice.leaf_chain("a1", UnikernelDestroy(), seconds=3600)
    ran: list[str] = []

    async def never(name: Name, command: Command) -> Payload:
        raise AssertionError("a destroy adds no resources: no usage query expected")

    async def run(*, admit: Admit) -> Payload:
        async with admit(UnikernelDestroy()):
            ran.append("destroy")
            return StringReply("destroyed")

    first = Gate(security, "127.0.0.1:5", never, NOW)
    assert await first.serve(await first.authorize(chain), run) == StringReply("destroyed")
    await first.close("success", 0.01)
    again = Gate(security, "127.0.0.1:5", never, NOW + dt.timedelta(minutes=1))
    reply = await again.serve(await again.authorize(chain), run)
    assert isinstance(reply, Failure) and "already executed" in reply.message
    head = await again.close("failure", 0.01)
    assert ran == ["destroy"]  # the replayed leaf never reached the daemon
    assert head is not None and verify(tmp_path / "audit.log", head).lines == 3
    lines = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert [line["event"] for line in lines] == ["decision", "outcome", "decision"]
    assert (lines[0]["name"], lines[0]["decision"]) == ("alice:a1", "allow")
    assert (lines[2]["name"], lines[2]["decision"]) == ("alice:a1", "deny")
    assert "already executed" in lines[2]["reason"]
    (crl_dir / "bad.crl").write_bytes(b"junk")
    later = Gate(security, "127.0.0.1:5", never, NOW)  # refresh logs, the empty CRL set stays
    await later.authorize(alice.leaf_chain("a2", UnikernelInfo()))
    await later.close("success", 0.01)
    security.close()
    files = sorted(p.name for p in (tmp_path / "sec").iterdir())
    assert files == [".security.db.verified", "security.db"]  # the store and its check stamp


async def test_query_deadline_and_missing_daemon_refuse(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    bob, _ = block_requests()
    security = Security(SecurityOptions(tmp_path / "sec", root().cert))
    missing = daemon_query(tmp_path / "nothing.sock", lambda: 1, timeout=5)
    with pytest.raises(SecurityRefusal, match="cannot check quotas: asking vmmd policy info"):
        async with security.quota.guard(bob, missing):
            pass
    listener = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await listener.bind(str(tmp_path / "mute.sock"))
    listener.listen(1)  # accepts in the kernel backlog, never answers
    mute = daemon_query(tmp_path / "mute.sock", lambda: 1, timeout=5)
    with pytest.raises(SecurityRefusal, match="vmmd did not answer policy info for : within 5 s"):
        async with security.quota.guard(bob, mute):
            pass
    listener.close()


async def test_sighup_reloads_the_crl_directory(tmp_path: Path) -> None:
    ca = root()
    alice = ca.delegate("alice", policy())
    crl_dir = tmp_path / "crls"
    crl_dir.mkdir()
    security = Security(SecurityOptions(tmp_path / "sec", ca.cert, crl_dir))
    chain = alice.leaf_chain("a1", create())
    assert security.crls is not None
    security.crls.check(chain)  # not revoked yet
    crl = make_crl(ca.cert, ca.key, {alice.cert.serial_number: NOW}, NOW, 1)
    (crl_dir / "root.crl").write_bytes(crl.public_bytes(Encoding.PEM))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reload_on_sighup, security)
        await trio.sleep(0.05)  # let the receiver install its handler
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(200):  # bounded wait for the signal's delivery
            if not security.crls.changed():
                break
            await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    with pytest.raises(SecurityRefusal, match="CN=alice"):
        security.crls.check(chain)
    security.close()


async def test_explain_online_uses_the_daemons_usage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "now", lambda: NOW)
    ca = root()
    alice = ca.delegate("alice", policy(block=100))
    bob = alice.delegate("bob", policy(block=100))
    carol = alice.delegate("carol", policy(block=100))
    (tmp_path / "chain.pem").write_bytes(encode_certificates(carol.leaf_chain("d", BlockAdd(60))))
    async with open_standin(tmp_path) as standin:
        assert await endpoint_run(standin, authorize(bob.leaf_chain("d", BlockAdd(60)))) == (
            StringReply("added block device")
        )
        args = ["explain", str(tmp_path / "chain.pem"), "--vmmd", str(standin.socket("vmmd"))]
        result = await trio.to_thread.run_sync(CliRunner().invoke, cli.main, args)
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines()[2] == (
        "refused by: alice:, field block (limit 100, requested 60, used 60)"
    )
