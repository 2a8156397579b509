"""``albatross-audit who NAME``: provenance from the audit log of a real run (our
endpoint in front of the stand-in), only once the log verifies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import hashes

from client import audit_cli
from client.provenance import history
from core.wire import (
    BlockAdd,
    BlockRemove,
    Name,
    StringReply,
    UnikernelDestroy,
    UnikernelRestart,
)
from tests.security.rig import failure, open_rig, small
from tlsendpoint.security.rules.auditformat import GENESIS, AuditError, digest, encode


def who(*args: str) -> Result:
    return CliRunner().invoke(audit_cli.main, ["who", *args])


async def test_who_names_the_chain_of_each_change(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    async with open_rig(tmp_path, audit_log=log) as rig:
        alice = rig.delegate(rig.root, "alice", small(unikernels=2, block=10))
        bob = rig.delegate(alice, "bob", small(unikernels=1, block=10))
        assert await rig.send(bob, "b1", rig.create()) == StringReply("created unikernel")
        refused = failure(await rig.send(bob, "b2", rig.create()))  # bob's quota: 1
        assert await rig.send(bob, "b1", UnikernelRestart(None)) == StringReply("created unikernel")
        assert await rig.send(alice, "a1", rig.create()) == StringReply("created unikernel")
        assert await rig.send(bob, "b1", UnikernelDestroy()) == StringReply("destroyed unikernel")
        assert await rig.send(bob, "disk", BlockAdd(1)) == StringReply("added block device")
        assert await rig.send(bob, "disk", BlockRemove()) == StringReply("removed block")
    leaf_serials = [bob.cert.serial_number, alice.cert.serial_number]

    text = who("alice:bob:b1", "--log", str(log))
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    heads = [line.split("  ", 1)[1] for line in lines if not line.startswith(" ")]
    assert heads == [
        "created alice:bob:b1  allowed: success: created unikernel",
        "restarted alice:bob:b1  allowed: success: created unikernel",
        "destroyed alice:bob:b1  allowed: success: destroyed unikernel",
    ]
    assert lines[2] == "  chain: CN=alice > CN=bob > CN=b1  (peer test-peer)"
    bob_fingerprint = bob.cert.fingerprint(hashes.SHA256()).hex()
    assert f"    CN=bob  serial {leaf_serials[0]:x}  sha256 {bob_fingerprint}" in lines
    assert f"    CN=alice  serial {leaf_serials[1]:x}  sha256 " in "\n".join(lines)

    data = json.loads(who("alice:bob:b2", "--log", str(log), "--json").stdout)
    assert (data["schema"], data["record"]) == (1, "who")  # the output model's record
    (denied,) = data["events"]
    assert (denied["action"], denied["decision"], denied["reason"], denied["outcome"]) == (
        "created", "deny", refused, None)  # fmt: skip
    assert [c["subject"] for c in denied["chain"]] == ["CN=b2", "CN=bob", "CN=alice"]
    assert denied["chain"][1]["serial"] == f"{leaf_serials[0]:x}"
    assert denied["cn_path"] == "CN=alice > CN=bob > CN=b2"

    disk = json.loads(who("alice:bob:disk", "--log", str(log), "--json").stdout)
    assert [(e["action"], e["outcome"]) for e in disk["events"]] == [
        ("created", "success: added block device"),
        ("destroyed", "success: removed block"),
    ]
    assert who("alice:a1", "--log", str(log), "--json").exit_code == 0
    nothing = who("alice:ghost", "--log", str(log))
    assert (nothing.exit_code, nothing.stdout) == (
        0, f"alice:ghost: no create, restart, update or destroy in {log} (verified)\n")  # fmt: skip

    # an edited log answers nothing, and says where it broke
    original = log.read_bytes()
    log.write_bytes(original.replace(b'"decision":"deny"', b'"decision":"allow"', 1))
    edited = who("alice:bob:b1", "--log", str(log))
    assert edited.exit_code == 1 and edited.stdout == ""
    assert edited.stderr.startswith(f"{log}: does not verify, no answer given: line ")
    log.write_bytes(original)
    wrong_head = who("alice:bob:b1", "--log", str(log), "--head", "ab" * 32)
    assert wrong_head.exit_code == 1 and "is not the hash of any record" in wrong_head.stderr
    bad_name = who("alice:B@d", "--log", str(log))
    assert bad_name.exit_code == 2
    assert bad_name.stderr.splitlines()[-1] == (
        "Error: Invalid value for NAME: name 'alice:B@d': invalid label 'B@d' "
        "(only [a-zA-Z0-9-.] allowed, 1 to 63 chars, no leading '-')"
    )


def _log(records: list[dict[str, object]]) -> list[bytes]:
    """A hash-chained log of *records* (seq and prev filled in), one line each."""
    lines, prev = [], GENESIS
    for seq, fields in enumerate(records, start=1):
        line = encode({**fields, "seq": seq, "prev": prev})
        lines.append(line + b"\n")
        prev = digest(line)
    return lines


def test_history_reads_format_1_and_a_crashed_tail() -> None:
    """A format-1 decision (no outcome record; no serials) and a torn last line."""
    old = {"time": "2025-01-01T00:00:00.000+00:00", "peer": "10.0.0.1:5", "name": "web",
           "command": "unikernel create memory=32MB cpuids=0 image=9B", "decision": "allow",
           "reason": "", "duration_ms": 1.0,
           "chain": [{"subject": "CN=web", "sha256": "ab" * 32}]}  # fmt: skip
    lines = _log([old])
    lines.append(b'{"v":2,"event":"decis')  # a crash while writing
    found = history(lines, Name.parse("web"))
    (event,) = found.events
    assert (event.action, event.seq, event.result) == (
        "created", -1, "allowed: no outcome recorded (format 1 log)")  # fmt: skip
    assert event.chain == [{"subject": "CN=web", "sha256": "ab" * 32}]
    assert [c.text() for c in found.verified.crashes] == [
        "line 2: 21 bytes of an incomplete line (a crash or a failed write), at the end; "
        "the endpoint closes it at its next start or write"
    ]
    assert history(lines, Name.parse("other")).events == []
    two = _log([old, old])
    edited = [two[0].replace(b'"name":"web"', b'"name":"wob"'), two[1]]
    with pytest.raises(AuditError, match=r"^line 2: "):  # the next record no longer chains
        history(edited, Name.parse("wob"))
