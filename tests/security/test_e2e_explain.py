"""Explain says exactly what the running endpoint answers: same reason, hop, field and numbers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import trio
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from ca.revoke import make_crl
from client import audit_cli as cli
from core.pem import encode_certificates
from core.wire import (
    Command,
    Failure,
    NetIf,
    Policy,
    StringReply,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelInfo,
)
from tests.endpoint.pki import Identity
from tests.security.rig import Rig, failure, now, open_rig, small

CREATED = StringReply("created unikernel")


async def explain(rig: Rig, identity: Identity, *extra: str) -> tuple[int, list[str]]:
    """``albatross-audit explain CHAIN --ca ... --state-dir ... --crl-dir ... --vmmd ...``."""
    chain_file = rig.tmp / f"chain-{identity.chain[0].serial_number}.pem"
    chain_file.write_bytes(encode_certificates(identity.chain))
    crl_dir = rig.security.options.crl_dir
    assert crl_dir is not None
    args = ["explain", str(chain_file), "--ca", str(rig.pki.ca_file),
            "--state-dir", str(rig.security.options.state_dir), "--crl-dir", str(crl_dir),
            "--vmmd", str(rig.standin.socket("vmmd")), *extra]  # fmt: skip
    result = await trio.to_thread.run_sync(CliRunner().invoke, cli.main, args)
    return result.exit_code, result.stdout.splitlines()


async def both(rig: Rig, identity: Identity) -> tuple[str, list[str]]:
    """The endpoint's Failure for *identity*'s request and explain's verdict for a twin leaf."""
    code, lines = await explain(rig, identity)
    assert code == 1, lines
    return failure((await rig.present(identity))[-1].payload), lines


async def test_explain_gives_the_endpoints_reason_for_every_rule(tmp_path: Path) -> None:
    crl_dir = tmp_path / "crls"
    crl_dir.mkdir()
    async with open_rig(tmp_path, crl_dir=crl_dir) as rig:
        alice = rig.delegate(rig.root, "alice", small(unikernels=1))
        bob = rig.delegate(alice, "bob", small())
        carol = rig.delegate(alice, "carol", small())

        def leaf(ca: object, cn: str, command: Command) -> Identity:
            return rig.identity(ca, cn, command)  # type: ignore[arg-type]

        allowed = leaf(bob, "b1", rig.create())
        code, lines = await explain(rig, allowed)
        assert (code, lines[0]) == (0, "allowed: unikernel create as alice:bob:b1"), lines
        assert (await rig.present(allowed))[-1].payload == CREATED
        # quota: the daemon's usage, alice's subtree
        reply, lines = await both(rig, leaf(carol, "c1", rig.create()))
        assert lines[:3] == [
            "refused (quota): unikernel create as alice:carol:c1",
            f"reason: {reply}",
            "refused by: alice:, field unikernels (limit 1, requested 1, used 1)",
        ]
        # name collision
        reply, lines = await both(rig, leaf(alice, ".", UnikernelDestroy()))
        assert lines[:2] == ["refused (name): unikernel destroy as alice:", f"reason: {reply}"]
        # anti-rollback: the endpoint's state directory
        start = now()
        old = rig.delegate(rig.root, "erin", small(), not_before=start - dt.timedelta(hours=2))
        new = rig.delegate(rig.root, "erin", small(), not_before=start - dt.timedelta(hours=1))
        assert not isinstance(await rig.send(new, ".", UnikernelInfo()), Failure)
        reply, lines = await both(rig, leaf(old, ".", UnikernelInfo()))
        assert lines[:2] == ["refused (rollback): unikernel info as erin:", f"reason: {reply}"]
        # revocation: the endpoint's CRL directory
        dave = rig.delegate(rig.root, "dave", small())
        crl = make_crl(rig.root.cert, rig.root.key, {dave.cert.serial_number: now()}, now(), 1)
        (crl_dir / "root.crl").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        reply, lines = await both(rig, leaf(dave, ".", UnikernelInfo()))
        assert lines[:2] == ["refused (revocation): unikernel info as dave:", f"reason: {reply}"]
        assert "intermediate certificate CN=dave" in reply


def test_explain_runs_as_a_command_of_its_own(tmp_path: Path) -> None:
    """``albatross-explain`` is the same click command without the group."""
    from tests.security.pki import create, policy, root

    ca = root()
    alice = ca.delegate("alice", policy(unikernels=1, memory=64), now=now())
    chain = tmp_path / "chain.pem"
    chain.write_bytes(encode_certificates(alice.leaf_chain(".", create(memory=128), now=now())))
    result = CliRunner().invoke(cli.explain_command, [str(chain)])
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == [
        "refused (name): unikernel create as alice:",
        "reason: unikernel create needs a unikernel or block name, but the leaf certificate "
        "names the path alice: (CN '.', ':' or none); that name would reach the object of the "
        "same name one level up: put the object's name in the CN",
    ]


async def test_explain_and_the_endpoint_agree_on_what_the_host_lacks(tmp_path: Path) -> None:
    crl_dir = tmp_path / "crls"
    crl_dir.mkdir()
    async with open_rig(tmp_path, crl_dir=crl_dir, bridges=()) as rig:
        service = Policy(2, frozenset({0, 7}), 64, None, frozenset({"service"}))
        alice = rig.delegate(rig.root, "alice", service)
        without = rig.identity(alice, "a1", rig.create())
        code, lines = await explain(rig, without)
        assert (code, lines[0]) == (0, "allowed: unikernel create as alice:a1"), lines
        assert (await rig.present(without))[-1].payload == CREATED
        nets = frozenset({NetIf("service0", "service")})
        for config, field in (
            (UnikernelConfig(rig.image, memory=32, cpuids=frozenset({0}), bridges=nets), "bridges"),
            (UnikernelConfig(rig.image, memory=32, cpuids=frozenset({7})), "cpuids"),
        ):
            reply, lines = await both(rig, rig.identity(alice, "n1", UnikernelCreate(config)))
            assert "not present on this host" in reply
            assert lines[:2] == [
                "refused (quota): unikernel create as alice:n1",
                f"reason: {reply}",
            ]
            assert lines[2].startswith(f"refused by: host, field {field} ")
