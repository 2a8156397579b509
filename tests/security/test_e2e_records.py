"""Revocation, replay protection and the audit log through the real endpoint and the stand-in."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import trio
import trio.testing
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ca.cmd_revoke import crl_command, revoke_command
from ca.revoke import make_crl
from client import audit_cli
from core.certs import CRL_EXTENSION_OID
from core.wire import (
    Payload,
    PolicyInfo,
    PolicyList,
    StringReply,
    UnikernelDestroy,
    UnikernelInfo,
    UnikernelInfoList,
)
from tests.endpoint.harness import Client
from tests.endpoint.pki import Identity
from tests.security.pki import Ca
from tests.security.rig import Rig, failure, now, open_rig, small
from tlsendpoint.activation import tcp_listen_socket

CREATED = StringReply("created unikernel")
DESTROYED = StringReply("destroyed unikernel")


def assert_revoked(reply: Payload, cert: x509.Certificate, issuer_cn: str) -> None:
    """The refusal names the revoked certificate (subject, serial) and who revoked it."""
    text = failure(reply)
    subject = cert.subject.rfc4514_string()
    assert text.startswith(
        f"intermediate certificate {subject} (serial {cert.serial_number:x}) was revoked on "
    ), text
    assert text.endswith(f"by its issuer CN={issuer_cn}"), text


async def allowed(rig: Rig, ca: Ca) -> bool:
    return isinstance(await rig.send(ca, ".", UnikernelInfo()), UnikernelInfoList)


def crl_leaf(rig: Rig, ca: Ca, crl: x509.CertificateRevocationList) -> Identity:
    """A delegate hands its CRL in: a read-only command and the CRL extension in one leaf."""
    der = crl.public_bytes(serialization.Encoding.DER)
    extension = x509.UnrecognizedExtension(x509.ObjectIdentifier(CRL_EXTENSION_OID), der)
    return rig.identity(ca, ".", PolicyInfo(), extra=[(extension, False)])


# -- (e) revocation -----------------------------------------------------------------------


async def test_a_crl_dropped_into_the_directory_takes_effect_on_the_next_connection(
    tmp_path: Path,
) -> None:
    crl_dir = tmp_path / "crls"
    crl_dir.mkdir()
    async with open_rig(tmp_path, crl_dir=crl_dir) as rig:
        alice = rig.delegate(rig.root, "alice", small())
        dave = rig.delegate(rig.root, "dave", small())
        assert await allowed(rig, alice)
        # the operator's tools: alba ca revoke, alba ca crl (the CA's files side by side)
        key_file = rig.pki.ca_file.parent / "ca.key"
        key_file.write_bytes(
            rig.pki.root_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        cacert = str(rig.pki.ca_file)
        result = CliRunner().invoke(
            revoke_command, ["--cacert", cacert, f"{alice.cert.serial_number:x}"]
        )
        assert result.exit_code == 0, result.output
        result = CliRunner().invoke(
            crl_command,
            ["--cacert", cacert, "--cakey", str(key_file), "--out", str(crl_dir / "root.crl")],
        )
        assert result.exit_code == 0, result.output
        assert_revoked(await rig.send(alice, ".", UnikernelInfo()), alice.cert, "ca")
        # revoking the delegation cuts off its whole subtree; others are unaffected
        bob = rig.delegate(alice, "bob", small())
        assert_revoked(await rig.send(bob, "b1", rig.create()), alice.cert, "ca")
        assert await allowed(rig, dave)


async def test_sighup_reloads_the_crl_directory_of_a_serving_endpoint(tmp_path: Path) -> None:
    crl_dir = tmp_path / "crls"
    crl_dir.mkdir()
    async with open_rig(tmp_path, crl_dir=crl_dir) as rig:
        alice = rig.delegate(rig.root, "alice", small())
        crls = rig.security.crls
        assert crls is not None
        listener = trio.SocketListener(
            trio.socket.from_stdlib_socket(tcp_listen_socket("127.0.0.1", 0, 8))
        )
        shutdown = trio.Event()
        async with trio.open_nursery() as nursery:
            (address,) = await nursery.start(rig.endpoint.serve, [listener], shutdown)
            crl = make_crl(rig.root.cert, rig.root.key, {alice.cert.serial_number: now()}, now(), 1)
            (crl_dir / "root.crl").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
            assert crls.changed()
            for _ in range(500):  # the endpoint's SIGHUP receiver is installed by its serve task
                if signal.getsignal(signal.SIGHUP) not in (signal.SIG_DFL, signal.SIG_IGN, None):
                    break
                await trio.sleep(0.01)
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(500):  # bounded wait for the signal; no connection in between
                if not crls.changed():
                    break
                await trio.sleep(0.01)
            assert not crls.changed(), "SIGHUP did not reload the CRL directory"
            identity = rig.identity(alice, ".", UnikernelInfo())
            tcp = await trio.open_tcp_stream(*address[:2])
            tls = trio.SSLStream(tcp, rig.pki.client(identity), server_hostname=None)
            reply = (await Client(tls).read_all())[-1].payload
            await tls.aclose()
            assert_revoked(reply, alice.cert, "ca")
            shutdown.set()


async def test_a_delegate_hands_in_a_crl_for_its_own_subtree(tmp_path: Path) -> None:
    crl_dir = tmp_path / "crls"
    crl_dir.mkdir()
    async with open_rig(tmp_path, crl_dir=crl_dir) as rig:
        alice = rig.delegate(rig.root, "alice", small(unikernels=2))
        bob = rig.delegate(alice, "bob", small())
        dave = rig.delegate(rig.root, "dave", small())
        assert await allowed(rig, bob) and await allowed(rig, dave)
        # alice's CRL lists bob (hers) and dave (the operator's): only bob is hers to revoke
        revoked = {bob.cert.serial_number: now(), dave.cert.serial_number: now()}
        crl = make_crl(alice.cert, alice.key, revoked, now(), 1)
        reply = (await rig.present(crl_leaf(rig, alice, crl)))[-1].payload
        assert isinstance(reply, PolicyList), reply  # the read-only command is served as usual
        assert [p.name for p in crl_dir.iterdir()] == [
            next(p.name for p in crl_dir.iterdir() if p.name.startswith("submitted-"))
        ]
        assert_revoked(await rig.send(bob, ".", UnikernelInfo()), bob.cert, "alice")
        assert await allowed(rig, dave)  # outside alice's subtree: ignored
        assert await allowed(rig, alice)
        # a CRL claiming to be the operator's but signed by alice is refused over the channel
        forged = make_crl(rig.root.cert, alice.key, {dave.cert.serial_number: now()}, now(), 2)
        refused = failure((await rig.present(crl_leaf(rig, alice, forged)))[-1].payload)
        assert refused == (
            "submitted CRL from CN=ca is not signed by a CA of your certificate chain: a "
            "delegate can only revoke what it issued"
        )
        # ... and ignored even when it lands in the directory
        (crl_dir / "forged.crl").write_bytes(forged.public_bytes(serialization.Encoding.PEM))
        assert await allowed(rig, dave)


# -- (f) replay -----------------------------------------------------------------------------


async def test_a_state_changing_leaf_runs_once_a_read_only_one_repeats(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        alice = rig.delegate(rig.root, "alice", small(unikernels=2))
        assert await rig.send(alice, "a1", rig.create()) == CREATED
        destroy = rig.identity(alice, "a1", UnikernelDestroy())
        assert (await rig.present(destroy))[-1].payload == DESTROYED
        assert await rig.send(alice, "a1", rig.create()) == CREATED  # a1 is back
        refused = failure((await rig.present(destroy))[-1].payload)
        assert refused.startswith(
            f"leaf certificate CN=a1 (serial {destroy.chain[0].serial_number:x}) already "
            "executed a state-changing command"
        ), refused
        info = rig.identity(alice, ".", UnikernelInfo())
        for _ in range(2):
            listing = (await rig.present(info))[-1].payload
            assert isinstance(listing, UnikernelInfoList)
            assert [str(n) for n, _ in listing.unikernels] == [":a1"]  # not destroyed again
        # also after a restart (the journal is read again)
        await rig.restart()
        assert "already executed" in failure((await rig.present(destroy))[-1].payload)


# -- (g) the audit log ------------------------------------------------------------------------


def verify(path: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(audit_cli.main, ["verify", str(path), *extra])
    return result.exit_code, result.output


async def test_the_audit_log_of_a_run_verifies_and_detects_edits(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    async with open_rig(tmp_path, audit_log=log) as rig:
        alice = rig.delegate(rig.root, "alice", small(unikernels=1))
        bob = rig.delegate(alice, "bob", small())
        carol = rig.delegate(alice, "carol", small())
        assert await rig.send(bob, "b1", rig.create()) == CREATED
        quota = failure(await rig.send(carol, "c1", rig.create()))
        assert await allowed(rig, alice)
        name = failure(await rig.send(alice, ".", UnikernelDestroy()))
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    # an allow is recorded before the command runs, its outcome after; deny at the end
    assert [(r["event"], r.get("name"), r.get("decision")) for r in lines] == [
        ("decision", "alice:bob:b1", "allow"),
        ("outcome", None, None),
        ("decision", "alice:carol:c1", "deny"),
        ("decision", "alice:", "allow"),
        ("outcome", None, None),
        ("decision", "alice:", "deny"),
    ]
    assert [lines[1]["decision_seq"], lines[4]["decision_seq"]] == [1, 4]
    assert lines[1]["outcome"] == "success: created unikernel"
    assert [lines[2]["reason"], lines[5]["reason"]] == [quota, name]
    assert lines[0]["command"].startswith("unikernel create memory=32MB cpuids=0 image=")
    assert [c["subject"] for c in lines[2]["chain"]] == ["CN=c1", "CN=carol", "CN=alice"]
    assert all(len(c["sha256"]) == 64 for c in lines[2]["chain"])
    code, out = verify(log)
    assert (code, out.count("\n")) == (0, 1) and "ok, 6 lines" in out, out  # no notes
    head = out.split("head ")[1].strip()
    assert verify(log, "--head", head)[0] == 0
    original = log.read_bytes()
    edited = original.replace(b'"decision":"deny"', b'"decision":"allow"', 1)
    log.write_bytes(edited)
    code, out = verify(log)
    assert code == 1 and "line 4: does not chain to line 3: line 3 was edited" in out, out
    raw = original.splitlines(keepends=True)
    log.write_bytes(b"".join(raw[:1] + raw[2:]))  # line 2 removed
    code, out = verify(log)
    assert code == 1 and "line 2: sequence number 3, expected 2" in out, out
    log.write_bytes(b"".join(raw[:5]))  # the last line cut off: only the head shows it
    assert verify(log)[0] == 0
    code, out = verify(log, "--head", head)
    assert code == 1 and "lines were removed from the end" in out, out


async def test_a_failed_handshake_leaves_an_error_line(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    async with open_rig(tmp_path, audit_log=log) as rig:
        server_side, client_side = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rig.endpoint.handle, server_side, "scanner")
            await client_side.send_all(b"GET / HTTP/1.0\r\n\r\n")
            await client_side.aclose()
    (line,) = [json.loads(text) for text in log.read_text().splitlines()]
    assert (line["peer"], line["decision"], line["chain"], line["name"]) == (
        "scanner", "error", [], None,
    )  # fmt: skip
    assert line["reason"].startswith("TLS handshake failed"), line
    assert verify(log)[0] == 0
