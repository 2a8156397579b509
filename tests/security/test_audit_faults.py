"""The audit log under faults (issue 11 point 2): full disks, short writes, crashes, locks.

The faults come from a fault-injecting :class:`FileOps` (the system calls an append
makes) and, for a real full disk, from ``RLIMIT_FSIZE`` in a subprocess.  What is
tested is the behaviour: an append either writes its whole record or leaves the file
as it was and says why; a torn end is closed with a recovery record; ``verify`` tells
a crash from tampering.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from client.audit_cli import main
from core.clock import fixed_clock
from tests.security.pki import NOW
from tests.security.test_audit import record
from tlsendpoint.security.rules.auditformat import (
    GENESIS,
    AuditError,
    OutcomeRecord,
    digest,
    encode,
)
from tlsendpoint.security.state.auditlog import (
    AuditDamaged,
    AuditLog,
    FileOps,
    open_audit_log,
    verify,
)


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def fill(path: Path, count: int = 3, **kwargs: object) -> AuditLog:
    log = AuditLog(path, **kwargs)  # type: ignore[arg-type]
    for i in range(count):
        log.append(record(i, "deny", f"r{i}"))  # complete: no allow waiting for its outcome
    return log


def outcome(seq: int, text: str = "success: created unikernel") -> OutcomeRecord:
    return OutcomeRecord(NOW, "127.0.0.1:1", seq, text, 0.5)


class Disk(FileOps):
    """A disk with *free* bytes left (None: unlimited); writes are cut at *chunk* bytes."""

    def __init__(self, free: int | None = None, chunk: int | None = None) -> None:
        self.free = free
        self.chunk = chunk
        self.can_truncate = True
        self.fsync_error: int | None = None
        self.calls: list[int] = []  # bytes asked per write

    def write(self, fd: int, data: bytes) -> int:
        self.calls.append(len(data))
        if self.free == 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        size = len(data) if self.chunk is None else min(len(data), self.chunk)
        if self.free is not None:
            size = min(size, self.free)
            self.free -= size
        return super().write(fd, data[:size])

    def fsync(self, fd: int) -> None:
        if self.fsync_error is not None:
            raise OSError(self.fsync_error, "Input/output error")
        super().fsync(fd)

    def truncate(self, fd: int, size: int) -> None:
        if not self.can_truncate:
            raise OSError(errno.EPERM, "Operation not permitted")  # an append-only file
        super().truncate(fd, size)


# -- the record structure: a decision before, an outcome after ---------------------------


def test_an_allow_and_its_outcome_are_two_chained_records(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    allowed = log.append(record(1, "allow"))
    log.append(record(2, "deny", "quota"))
    done = log.append(outcome(allowed.seq))
    log.append(record(3, "allow"))  # still running (or the endpoint stopped)
    log.close()
    first, _, third, fourth = (json.loads(x) for x in lines(path))
    assert (first["v"], first["event"], first["decision"], first["reason"]) == (
        2, "decision", "allow", "",
    )  # fmt: skip
    assert (third["event"], third["decision_seq"], third["outcome"]) == (
        "outcome", allowed.seq, "success: created unikernel",
    )  # fmt: skip
    result = verify(path, head=done.head)  # an older head: still in the log
    assert (result.lines, result.records, result.crashes) == (4, 4, ())
    assert [d.line for d in result.open_decisions] == [4]
    assert result.notes() == [
        "line 4: `unikernel info` for alice:a3 was allowed but has no outcome: the endpoint "
        "stopped (a crash) or could not write it before the daemon answered, or it is still "
        "running"
    ]
    assert fourth["seq"] == 4


def test_an_outcome_must_complete_an_open_allow(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    denied = log.append(record(1, "deny", "no"))
    log.append(outcome(denied.seq))  # only a rewriter with every hash could write this
    log.close()
    with pytest.raises(AuditError, match="line 2: an outcome for record 1, which is not an"):
        verify(path)


def test_logs_of_the_first_format_verify_and_continue(tmp_path: Path) -> None:
    """Format 1 (one line per connection, no "v", before issue 11) is still read."""
    path = tmp_path / "audit.log"
    prev, old = GENESIS, []
    for seq in (1, 2):
        fields = {**record(seq).fields(), "seq": seq, "prev": prev}
        del fields["event"]  # format 1 has no event (nor "v")
        line = encode(fields)
        old.append(line + b"\n")
        prev = digest(line)
    path.write_bytes(b"".join(old))
    assert verify(path).records == 2
    log = AuditLog(path)  # a format 2 endpoint continues the chain
    log.append(record(3))
    log.close()
    result = verify(path)
    assert (result.records, json.loads(lines(path)[2])["seq"]) == (3, 3)
    edited = path.read_bytes().replace(b'"decision":"allow"', b'"decision":"deny"', 1)
    path.write_bytes(edited)
    with pytest.raises(AuditError, match="line 2: does not chain to line 1: line 1 was edited"):
        verify(path)


# -- short writes and full disks ---------------------------------------------------------


def test_short_writes_are_continued_until_the_record_is_whole(tmp_path: Path) -> None:
    disk = Disk(chunk=7)
    log = fill(tmp_path / "audit.log", 2, ops=disk)
    log.close()
    assert max(disk.calls) > 7 and len(disk.calls) > 20  # many short writes, one record each
    assert verify(tmp_path / "audit.log").records == 2


@pytest.mark.parametrize("free", [0, 1, 40])
def test_a_full_disk_refuses_and_leaves_no_partial_line(tmp_path: Path, free: int) -> None:
    path = tmp_path / "audit.log"
    disk = Disk()
    log = fill(path, 2, ops=disk)
    before = path.read_bytes()
    disk.free = free  # the disk fills up: a partial write, then ENOSPC
    with pytest.raises(AuditError) as caught:
        log.append(record(5))
    assert caught.value.message == (f"cannot write audit log {path}: No space left on device")
    assert path.read_bytes() == before  # the partial line was taken back
    disk.free = None  # space freed: appends work again at once
    log.append(record(6))
    log.close()
    result = verify(path)
    assert (result.records, result.crashes) == (3, ())


def test_a_failed_fsync_takes_the_record_back(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    disk = Disk()
    log = fill(path, 1, ops=disk, fsync=True)
    before = path.read_bytes()
    disk.fsync_error = errno.EIO
    with pytest.raises(AuditError, match="Input/output error"):
        log.append(record(2))
    assert path.read_bytes() == before
    disk.fsync_error = None
    log.append(record(3))
    log.close()
    assert verify(path).records == 2


def test_a_partial_line_that_cannot_be_taken_back_is_closed_by_the_next_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "audit.log"
    disk = Disk()
    log = fill(path, 2, ops=disk)
    disk.free, disk.can_truncate = 25, False  # full, and append-only: no ftruncate
    with pytest.raises(AuditError) as caught:
        log.append(record(5))
    assert caught.value.message == (
        f"cannot write audit log {path}: No space left on device; "
        "the incomplete line is closed at the next write"
    )
    assert not path.read_bytes().endswith(b"\n")
    result = verify(path)  # a crash's shape, not tampering: exit 0 with a note
    assert [c.text() for c in result.crashes] == [
        "line 3: 25 bytes of an incomplete line (a crash or a failed write), at the end; "
        "the endpoint closes it at its next start or write"
    ]
    with pytest.raises(AuditError):  # still full: the recovery itself cannot be written
        log.append(record(6))
    disk.free = None
    caplog.set_level(logging.ERROR, "albatross.security")
    appended = log.append(record(7))
    log.close()
    assert any("recovery record 3 written" in r.getMessage() for r in caplog.records)
    result = verify(path, head=appended.head)
    assert result.records == 4 and result.lines == 5
    assert [c.text() for c in result.crashes] == [
        "line 3: 25 bytes of an incomplete line (a crash or a failed write), "
        "recovered at line 4 (not tampering)"
    ]
    torn = json.loads(lines(path)[3])
    assert (torn["event"], torn["seq"], torn["torn_bytes"]) == ("torn", 3, 25)


_FULL_DISK = """
import json, resource, sys
from pathlib import Path
from tests.security.test_audit import record
from tlsendpoint.security.rules.auditformat import AuditError
from tlsendpoint.security.state.auditlog import AuditLog

path = Path(sys.argv[1])
log = AuditLog(path)
size = path.stat().st_size
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 10, hard))  # 10 bytes fit, then EFBIG
try:
    log.append(record(9))
    error = None
except AuditError as exc:
    error = exc.message
after = path.stat().st_size
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space freed
log.append(record(10))
print(json.dumps({"error": error, "size": size, "after": after}))
"""


def test_a_real_file_size_limit_in_a_subprocess(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes the kernel refuse to grow the file, as a full disk does (EFBIG;
    Python ignores SIGXFSZ); a limit that cannot be lifted again applies to the child only."""
    path = tmp_path / "audit.log"
    fill(path, 3).close()
    result = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(path)],
        capture_output=True, text=True, timeout=60, check=False,
        cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["error"] == f"cannot write audit log {path}: File too large"
    assert report["after"] == report["size"]  # the 10 bytes that fit were taken back
    verified = verify(path)
    assert (verified.records, verified.crashes) == (4, ())


# -- a crash: detected at start, reported, recovered; verify tells it from tampering ------


def crash_while_writing(path: Path, count: int = 3, keep: int = 57) -> bytes:
    """A log whose last record was cut after *keep* bytes, as a crash leaves it."""
    log = fill(path, count)
    log.close()
    content = lines(path)
    path.write_bytes(b"".join(content[:-1]) + content[-1][:keep])
    return content[-1][:keep]


def test_a_torn_end_is_recovered_at_start_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "audit.log"
    fragment = crash_while_writing(path)
    caplog.set_level(logging.INFO, "albatross.security")
    log = open_audit_log(path, fsync=True, clock=fixed_clock(NOW))
    (message,) = [r.getMessage() for r in caplog.records]
    assert message == (
        f"audit log {path}: the endpoint stopped while writing its end (57 bytes of an "
        "incomplete line); recovery record 3 written, chained from the last intact record"
    )
    content = lines(path)
    assert content[2] == fragment + b"\n"  # the torn bytes stay, as evidence
    torn = json.loads(content[3])
    assert torn == {
        "event": "torn", "v": 2, "seq": 3, "prev": digest(content[1][:-1]),
        "time": "2026-11-27T12:00:00.000+00:00", "torn_bytes": 57,
        "torn_sha256": digest(fragment), "reason": torn["reason"],
    }  # fmt: skip
    log.append(record(4))
    log.close()
    result = verify(path)
    assert (result.records, result.lines) == (4, 5)
    assert [c.text() for c in result.crashes] == [
        "line 3: 57 bytes of an incomplete line (a crash or a failed write), "
        "recovered at line 4 (not tampering)"
    ]


def test_a_record_cut_just_before_its_newline_stays_a_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    whole = crash_while_writing(path, keep=-1)  # everything but the newline
    open_audit_log(path, fsync=False, clock=fixed_clock(NOW)).close()
    result = verify(path)
    assert result.records == 4  # the three records and the recovery record
    assert json.loads(whole)["seq"] == 3
    assert [c.text() for c in result.crashes] == [
        "line 3: a whole record whose newline was missing (a crash right after it), "
        "recovered at line 4 (not tampering)"
    ]


def test_a_crash_while_recovering_is_recovered_too(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    crash_while_writing(path, keep=30)
    open_audit_log(path, fsync=False, clock=fixed_clock(NOW)).close()
    content = lines(path)  # now crash in the middle of the recovery record
    path.write_bytes(b"".join(content[:-1]) + content[-1][:40])
    open_audit_log(path, fsync=False, clock=fixed_clock(NOW)).close()
    result = verify(path)
    assert [c.text() for c in result.crashes] == [
        "lines 3-4: 71 bytes of an incomplete line (a crash or a failed write), "
        "recovered at line 5 (not tampering)"
    ]


TAMPERING = {
    # records out of place, or more lines that are no records than a crash leaves
    "last line duplicated": lambda c: [*c, c[-1]],
    "last two lines swapped": lambda c: [*c[:-2], c[-1], c[-2]],
    "three incomplete lines": lambda c: [*c, b"{\n", b"{\n", b'{"s'],
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_a_damaged_end_stops_the_start_and_fails_verify(tmp_path: Path, case: str) -> None:
    path = tmp_path / "audit.log"
    fill(path).close()
    path.write_bytes(b"".join(TAMPERING[case](lines(path))))
    before = path.read_bytes()
    with pytest.raises(AuditDamaged) as caught:
        open_audit_log(path, fsync=False)
    assert caught.value.message.startswith(
        f"the audit log {path} does not end with an audit record or a line torn by a crash ("
    )
    assert caught.value.message.endswith(
        f"run `albatross-audit verify {path}`, keep the file as evidence and move it aside to "
        "start a new log"
    )
    assert path.read_bytes() == before  # nothing appended to a log that is not ours
    with pytest.raises(AuditError):
        verify(path)


def test_tampering_around_a_recovered_crash_is_still_found(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    crash_while_writing(path)
    log = open_audit_log(path, fsync=False, clock=fixed_clock(NOW))
    log.append(record(4))
    log.close()
    original = lines(path)
    # the torn bytes swapped for others: the recovery record no longer covers them
    path.write_bytes(b"".join([*original[:2], b'{"seq":3,"forged":1}\n', *original[3:]]))
    with pytest.raises(AuditError, match="line 4: a recovery record that does not match the"):
        verify(path)
    # a record before the crash edited: the chain breaks as always
    edited = original[1].replace(b'"reason":"r1"', b'"reason":"ok"')
    assert edited != original[1]
    path.write_bytes(b"".join([original[0], edited, *original[2:]]))
    with pytest.raises(AuditError, match="does not chain to line 2: line 2 was edited"):
        verify(path)


def test_the_cli_reports_a_crash_on_stdout_and_tampering_as_an_error(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    crash_while_writing(path)
    runner = CliRunner()
    crashed = runner.invoke(main, ["verify", str(path)])
    assert crashed.exit_code == 0
    assert crashed.stdout.splitlines()[1:] == [
        f"{path}: crash: line 3: 57 bytes of an incomplete line (a crash or a failed write), "
        "at the end; the endpoint closes it at its next start or write"
    ]
    assert crashed.stdout.startswith(f"{path}: ok, 3 lines, head ")
    content = lines(path)
    path.write_bytes(b"".join([content[1], content[0], content[2]]))  # two records swapped
    tampered = runner.invoke(main, ["verify", str(path)])
    assert tampered.exit_code == 1
    assert tampered.stderr == (
        f"{path}: line 1: sequence number 2, expected 1: "
        "lines were removed, inserted or reordered before it\n"
    )


# -- bounded waits -----------------------------------------------------------------------


class Locked(FileOps):
    """Another process holds the lock until *release* is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.tried = threading.Event()

    def try_lock(self, fd: int) -> bool:
        self.tried.set()
        return self.release.is_set() and super().try_lock(fd)


def test_waiting_for_another_process_s_lock_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    ops = Locked()
    log = AuditLog(path, ops=ops, lock_timeout=0.05)
    with pytest.raises(AuditError) as caught:
        log.append(record(1))
    assert caught.value.message == (
        f"the audit log {path} stayed locked by another process for 0.05 s"
    )
    ops.release.set()
    log.append(record(2))
    log.close()
    assert verify(path).records == 1


def test_the_log_keeps_its_time_from_the_clock_passed_in(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    crash_while_writing(path)
    later = NOW + dt.timedelta(days=400)
    open_audit_log(path, fsync=False, clock=fixed_clock(later)).close()
    assert json.loads(lines(path)[-1])["time"] == "2028-01-01T12:00:00.000+00:00"


def test_a_crash_at_any_byte_is_a_crash_and_is_recovered(tmp_path: Path) -> None:
    """Cut the log at every byte of its last record (a crash while writing it), then at
    every byte of the recovery record too: verify never reports tampering, and after the
    endpoint's recovery the chain is whole and goes on."""
    path = tmp_path / "audit.log"
    log = fill(path, 2)
    log.append(record(3, "allow"))
    log.close()
    original = path.read_bytes()
    start = original.rindex(b"\n", 0, len(original) - 1) + 1  # the last record's first byte
    clock = fixed_clock(NOW)
    for cut in range(start, len(original)):
        path.write_bytes(original[:cut])
        before = verify(path)  # a crash, not tampering
        assert before.records == 2 or (before.records == 3 and cut == len(original) - 1)
        open_audit_log(path, fsync=False, clock=clock).close()
        recovered = path.read_bytes()
        # a crash during the recovery: right after its first bytes, in it, before its end
        size = len(recovered)
        points = {cut + 1, cut + 2, (cut + size) // 2, size - 2, size - 1}
        for second in sorted(x for x in points if cut < x < size):
            path.write_bytes(recovered[:second])
            verify(path)
            open_audit_log(path, fsync=False, clock=clock).close()
            healed = cut == len(original) - 1 and second == cut + 1  # only the newline was due
            assert bool(verify(path).crashes) != healed, (cut, second)
        path.write_bytes(recovered)
        log = AuditLog(path)
        appended = log.append(record(4, "deny", "after the crash"))
        log.close()
        result = verify(path, head=appended.head)
        assert len(result.crashes) == (0 if cut == start else 1), cut
