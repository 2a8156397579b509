"""Explain: the endpoint's verdict offline, naming the certificate and field (issue 6.9)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import Encoding

from ca.bundle import Bundle
from ca.revoke import make_crl
from ca.store import write_bundle
from client import audit_cli as cli
from core.authorize import Refusal, authorize
from core.pem import encode_certificates, encode_private_key
from core.wire import BlockAdd, UnikernelInfo
from tests.security.pki import NOW, Ca, create, policy, root
from tests.security.test_quota import HOST, host_usage
from tlsendpoint.security.explain import explain_bundle, explain_chain
from tlsendpoint.security.rules.quota import QuotaError, check_usage, demand_of
from tlsendpoint.security.rules.rollback import delegations
from tlsendpoint.security.state.crldir import CrlStore
from tlsendpoint.security.state.records import SecurityStore

DAY = dt.timedelta(days=1)


def tree() -> tuple[Ca, Ca, Ca]:
    ca = root()
    alice = ca.delegate("alice", policy(unikernels=1, memory=256))
    return ca, alice, alice.delegate("bob", policy(unikernels=1, memory=256))


def test_quota_refusal_names_hop_and_field_with_the_endpoints_text() -> None:
    ca, _, bob = tree()
    chain = bob.leaf_chain("b1", create(memory=64))
    usage = host_usage(("alice:carol:c1", 32))
    verdict = explain_chain(chain, NOW, anchor=ca.cert, root_policy=HOST, usage=usage)
    request = authorize(chain)
    demand = demand_of(request.name, request.command)
    assert demand is not None
    with pytest.raises(QuotaError) as endpoint:  # what the endpoint's hook raises
        check_usage(request.policies, HOST, usage, demand)
    assert not verdict.allowed
    assert (verdict.stage, verdict.hop, verdict.field) == ("quota", "alice:", "unikernels")
    assert (verdict.limit, verdict.used, verdict.requested) == (1, 1, 1)
    assert verdict.reason == endpoint.value.message
    assert verdict.text().splitlines() == [
        "refused (quota): unikernel create as alice:bob:b1",
        f"reason: {endpoint.value.message}",
        "refused by: alice:, field unikernels (limit 1, requested 1, used 1)",
        "note: revocation not checked (no CRL directory given)",
    ]


def test_idle_host_allows_and_says_what_it_assumed() -> None:
    ca, _, bob = tree()
    verdict = explain_chain(bob.leaf_chain("b1", create(memory=64)), NOW, anchor=ca.cert)
    assert verdict.allowed and verdict.stage == "ok"
    assert "usage unknown: assumed nothing else runs on the host" in verdict.notes
    assert "host limits not checked (no root policy given)" in verdict.notes


def test_memory_beyond_a_delegation_names_it() -> None:
    _, _, bob = tree()
    verdict = explain_chain(bob.leaf_chain("b1", create(memory=512)), NOW, root_policy=HOST)
    assert (verdict.hop, verdict.field, verdict.limit, verdict.requested) == (
        "alice:bob:",
        "memory",
        256,
        512,
    )


def test_authorize_refusal_is_the_endpoints_text() -> None:
    _, alice, _ = tree()
    chain = alice.leaf_chain("bad_label!", UnikernelInfo())
    with pytest.raises(Refusal) as endpoint:
        authorize(chain)
    verdict = explain_chain(chain, NOW)
    assert (verdict.stage, verdict.reason) == ("authorize", endpoint.value.message)


def test_tls_problems_are_explained() -> None:
    ca, alice, _ = tree()
    expired = explain_chain(alice.leaf_chain("a", UnikernelInfo()), NOW + DAY, anchor=ca.cert)
    assert expired.stage == "tls" and "CN=a is not valid now" in (expired.reason or "")
    stranger = explain_chain(alice.leaf_chain("a", UnikernelInfo()), NOW, anchor=root().cert)
    assert stranger.reason == "certificate CN=alice is not signed by CN=ca"


def test_delegation_revocation_and_rollback_stages(tmp_path: Path) -> None:
    ca = root()
    alice = ca.delegate("alice", policy(unikernels=2))
    big = alice.delegate("bob", policy(unikernels=5))
    verdict = explain_chain(big.leaf_chain("b", create()), NOW)
    assert verdict.stage == "authorize" and "alice:bob:" in (verdict.reason or "")
    huge = ca.delegate("huge", policy(memory=100_000))  # more than the host: allowed on paper
    assert explain_chain(huge.leaf_chain("h", create()), NOW, root_policy=HOST).allowed
    verdict = explain_chain(huge.leaf_chain("h", create(memory=5000)), NOW, root_policy=HOST)
    assert (verdict.stage, verdict.hop, verdict.field) == ("quota", "host", "memory")
    assert (verdict.limit, verdict.used, verdict.requested) == (4096, 0, 5000)
    crl = make_crl(ca.cert, ca.key, {alice.cert.serial_number: NOW}, NOW, 1)
    (tmp_path / "root.crl").write_bytes(crl.public_bytes(Encoding.PEM))
    revoked = explain_chain(
        alice.leaf_chain("a", create()), NOW, crls=CrlStore(tmp_path, ca.cert).revocations
    )
    assert revoked.stage == "revocation" and "CN=alice" in (revoked.reason or "")
    old = ca.delegate("carol", policy(), now=NOW - DAY)
    new = ca.delegate("carol", policy(), now=NOW)
    store = SecurityStore(tmp_path / "security.db")
    store.open()
    store.record_delegations(delegations(new.leaf_chain("c", create())), int(NOW.timestamp()))
    rolled = explain_chain(old.leaf_chain("c", create()), NOW, rollback=store.all_seen())
    assert rolled.stage == "rollback" and "older than the newest" in (rolled.reason or "")


def bundle_of(ca: Ca, alice: Ca) -> Bundle:
    return Bundle("alice", (alice.cert,), alice.key, (ca.cert,), "host.example:1025")


def test_bundle_and_command() -> None:
    ca, alice, _ = tree()
    assert explain_bundle(bundle_of(ca, alice), "a1", create(memory=64), NOW).allowed
    verdict = explain_bundle(bundle_of(ca, alice), "disk", BlockAdd(500), NOW)
    assert (verdict.hop, verdict.field, verdict.limit, verdict.requested) == (
        "alice:",
        "block",
        100,
        500,
    )


def test_cli_explain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "now", lambda: NOW)
    ca, alice, bob = tree()
    chain_file = tmp_path / "chain.pem"
    chain_file.write_bytes(encode_certificates(bob.leaf_chain("b1", create(memory=512))))
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(encode_certificates([ca.cert]))
    runner = CliRunner()
    refused = runner.invoke(cli.main, ["explain", str(chain_file), "--ca", str(ca_file)])
    assert refused.exit_code == 1
    assert refused.stdout.splitlines()[2] == (
        "refused by: alice:bob:, field memory (limit 256, requested 512, used 0)"
    )
    write_bundle(tmp_path / "alice.bundle", bundle_of(ca, alice))
    ok = runner.invoke(
        cli.main,
        ["explain", "--bundle", str(tmp_path / "alice.bundle"), "--command", "create",
         "--name", "a1", "--memory", "64"],
    )  # fmt: skip
    assert (ok.exit_code, ok.stdout.splitlines()[0]) == (0, "allowed: unikernel create as alice:a1")
    missing = runner.invoke(cli.main, ["explain"])
    assert missing.exit_code == 2 and "give a CHAIN_FILE, --bundle or --remote" in missing.output


def test_cli_explain_remote_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "now", lambda: NOW)
    ca, alice, _ = tree()
    (tmp_path / "chain.pem").write_bytes(encode_certificates([alice.cert]))
    (tmp_path / "key.pem").write_bytes(encode_private_key(alice.key))
    (tmp_path / "server-ca.pem").write_bytes(encode_certificates([ca.cert]))
    remotes = tmp_path / "remotes.toml"
    remotes.write_text(
        "[remotes.friend]\n"
        'destination = "host.example:1025"\n'
        f'ca = "{tmp_path / "chain.pem"}"\n'
        f'ca_key = "{tmp_path / "key.pem"}"\n'
        f'server_ca = "{tmp_path / "server-ca.pem"}"\n'
    )
    monkeypatch.setenv("ALBATROSS_REMOTES", str(remotes))
    args = ["explain", "--remote", "friend", "--command", "create", "--name", "a1"]
    result = CliRunner().invoke(cli.main, [*args, "--memory", "300"])
    assert result.exit_code == 1
    assert result.stdout.splitlines()[:3] == [
        "refused (quota): unikernel create as alice:a1",
        "reason: maximum allowed memory (256, used 0) would be exceeded (requesting 300) in the "
        "whole subtree of delegation alice: (certificate CN alice), field memory "
        "(limit 256, used 0, requested 300)",
        "refused by: alice:, field memory (limit 256, requested 300, used 0)",
    ]
    unknown = CliRunner().invoke(cli.main, ["explain", "--remote", "nobody"])
    assert unknown.exit_code == 2 and "no remote named 'nobody'" in unknown.output
