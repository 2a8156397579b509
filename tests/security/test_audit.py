"""Hash-chained audit log: removed, reordered, edited lines are found and named (issue 6.8)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import hashes

from client.audit_cli import main
from core.wire import BlockAdd
from tests.security.pki import NOW, create, policy, root
from tlsendpoint.security.rules.auditformat import (
    GENESIS,
    MAX_LINE,
    AuditError,
    AuditRecord,
    command_summary,
)
from tlsendpoint.security.state.auditlog import AuditLog, verify


def record(n: int, decision: str = "allow", reason: str = "") -> AuditRecord:
    return AuditRecord(
        time=NOW + dt.timedelta(seconds=n),
        peer=f"127.0.0.1:{40000 + n}",
        chain=[],
        name=f"alice:a{n}",
        command="unikernel info",
        decision=decision,
        reason=reason,
        duration=0.25,
    )


def write_log(path: Path, count: int = 4) -> list[str]:
    log = AuditLog(path)
    heads = [
        log.append(record(i, "deny" if i % 2 else "allow", f"r{i}")).head for i in range(count)
    ]
    log.close()
    return heads


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_a_written_log_verifies_and_reports_its_head(tmp_path: Path) -> None:
    heads = write_log(tmp_path / "audit.log")
    result = verify(tmp_path / "audit.log")
    assert (result.lines, result.head) == (4, heads[-1])
    first = json.loads(lines(tmp_path / "audit.log")[0])
    assert (first["seq"], first["prev"], first["decision"]) == (1, GENESIS, "allow")
    assert first["duration_ms"] == 250.0


def test_record_fields_name_every_certificate(tmp_path: Path) -> None:
    alice = root().delegate("alice", policy())
    chain = alice.leaf_chain("a1", create(memory=64))
    log = AuditLog(tmp_path / "audit.log")
    log.append(
        AuditRecord(
            NOW,
            "peer",
            chain,
            "alice:a1",
            command_summary(create(64)),
            "deny",
            "quota",
            0.0,
        )
    )
    entry = json.loads(lines(tmp_path / "audit.log")[0])
    assert [c["sha256"] for c in entry["chain"]] == [
        c.fingerprint(hashes.SHA256()).hex() for c in chain
    ]
    assert [c["subject"] for c in entry["chain"]] == ["CN=a1", "CN=alice"]
    assert entry["command"] == "unikernel create memory=64MB cpuids=0 image=4B"
    assert command_summary(BlockAdd(20)) == "block add size=20MB"


def test_edited_line_is_detected_and_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    write_log(path)
    content = lines(path)
    # a careful forger keeps the JSON valid and canonical: a deny becomes an allow
    content[1] = content[1].replace(b'"decision":"deny"', b'"decision":"allow"')
    path.write_bytes(b"".join(content))
    with pytest.raises(AuditError) as caught:
        verify(path)
    assert caught.value.line == 2
    assert "line 2 was edited" in caught.value.message


def test_removed_line_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    write_log(path)
    content = lines(path)
    del content[1]
    path.write_bytes(b"".join(content))
    with pytest.raises(AuditError, match="line 2: sequence number 3, expected 2"):
        verify(path)


def test_reordered_lines_are_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    write_log(path)
    content = lines(path)
    content[1], content[2] = content[2], content[1]
    path.write_bytes(b"".join(content))
    with pytest.raises(AuditError) as caught:
        verify(path)
    assert caught.value.line == 2


def test_renumbered_removal_is_still_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    write_log(path)
    content = [json.loads(x) for x in lines(path)]
    del content[1]
    for i, fields in enumerate(content, 1):
        fields["seq"] = i  # the forger fixes the numbers but cannot fix the hashes
    path.write_bytes(
        b"".join(
            json.dumps(f, sort_keys=True, separators=(",", ":")).encode() + b"\n" for f in content
        )
    )
    with pytest.raises(AuditError, match="line 2: does not chain to line 1"):
        verify(path)


def test_cut_tail_or_edited_last_line_needs_the_head(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    heads = write_log(path)
    path.write_bytes(b"".join(lines(path)[:-1]))
    assert verify(path).lines == 3  # a chain alone cannot see a cut tail...
    with pytest.raises(AuditError, match="removed from the end"):
        verify(path, head=heads[-1])  # ...the recorded head does


def test_restart_and_a_second_writer_continue_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    write_log(path, 2)
    first, second = AuditLog(path), AuditLog(path)  # e.g. two inetd processes
    first.append(record(10))
    head = second.append(record(11)).head
    first.close()
    second.close()
    assert verify(path, head=head).lines == 4


def test_lines_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    log.append(record(1, reason="x" * 1_000_000))
    log.append(record(2))
    log.close()
    assert all(len(x) <= MAX_LINE for x in lines(path))
    assert verify(path).lines == 2


def test_cli_verify(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    heads = write_log(path)
    runner = CliRunner()
    ok = runner.invoke(main, ["verify", str(path)])
    assert ok.exit_code == 0
    assert ok.output.splitlines()[0] == f"{path}: ok, 4 lines, head {heads[-1]}"
    # the allows of write_log have no outcome record: listed, not an error
    assert [line.split(": ", 2)[1] for line in ok.output.splitlines()[1:]] == ["note", "note"]
    content = lines(path)
    del content[0]
    path.write_bytes(b"".join(content))
    bad = runner.invoke(main, ["verify", str(path)])
    assert bad.exit_code == 1
    assert bad.output == (
        f"{path}: line 1: sequence number 2, expected 1: "
        "lines were removed, inserted or reordered before it\n"
    )
