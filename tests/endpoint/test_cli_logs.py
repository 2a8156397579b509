"""Command-line error paths (CliRunner) and the per-connection log line and its targets."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from core.wire import UnikernelInfo, UnikernelInfoList
from tests.endpoint.fakedaemon import reply_table
from tests.endpoint.harness import with_fake_daemon
from tests.endpoint.pki import Pki, write_chain
from tlsendpoint.cli import cli, main
from tlsendpoint.connlog import (
    BackgroundHandler,
    ConnectionRecord,
    JournalHandler,
    configure_logging,
)


def _files(pki: Pki) -> list[str]:
    return [str(pki.ca_file), str(pki.cert_file), str(pki.key_file)]


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert (result.exit_code, result.output) == (0, "version 0.1.0 protocol version 5\n")


def test_two_cas_exit_125(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    write_chain(pki.ca_file, [pki.root, pki.server])
    result = CliRunner().invoke(cli, ["--tmpdir", str(tmp_path), *_files(pki)])
    assert result.exit_code == 125
    assert "expect single ca as cacert" in result.output


def test_key_mismatch_exit_125(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    (tmp_path / "o").mkdir()
    other = Pki(tmp_path / "o")
    args = ["--tmpdir", str(tmp_path), str(pki.ca_file), str(pki.cert_file), str(other.key_file)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 125
    assert "cannot use certificate" in result.output


def test_bad_ip_exit_125(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    result = CliRunner().invoke(cli, ["--ip", "nowhere", "--tmpdir", str(tmp_path), *_files(pki)])
    assert result.exit_code == 125
    assert "--ip 'nowhere' is not an IPv4 or IPv6 address" in result.output


def test_missing_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--tmpdir", str(tmp_path), "a.pem", "b.pem", "c.pem"])
    assert info.value.code == 124
    assert "'a.pem' does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_missing_tmpdir_is_a_startup_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """/run/albatross before albatrossd made it: 125 (Restart= tries again), said once."""
    pki = Pki(tmp_path)
    tmpdir = tmp_path / "nope"
    if kind == "file":
        tmpdir.write_text("")
    with pytest.raises(SystemExit) as info:
        main(["--tmpdir", str(tmpdir), *_files(pki)])
    assert info.value.code == 125
    reason = "does not exist" if kind == "missing" else "is not a directory"
    assert capsys.readouterr().err == (
        f"albatross-tls-endpoint: --tmpdir {tmpdir} {reason}: albatrossd creates it when it"
        " starts (is albatrossd running, with the same --tmpdir?)\n"
    )


def test_startup_error_printed_once_with_stderr_logging(tmp_path: Path) -> None:
    """The log is stderr: the reason appears there once, not as a log line and again."""
    pki = Pki(tmp_path)
    write_chain(pki.ca_file, [pki.root, pki.server])
    script = Path(sys.executable).parent / "albatross-tls-endpoint"
    result = subprocess.run(
        [str(script), "--tmpdir", str(tmp_path), *_files(pki)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 125
    assert result.stderr.count("expect single ca as cacert") == 1, result.stderr


def test_log_line_quotes_hostile_values() -> None:
    record = ConnectionRecord("1.2.3.4:5", chain='CN=a" outcome="ok\nX', name="x", command="c")
    record.outcome = "failure: no"
    line = record.line(1.5)
    assert "\n" not in line
    assert line == (
        'peer=1.2.3.4:5 chain="CN=a\\" outcome=\\"ok\\x0aX" name="x" command="c"'
        ' outcome="failure: no" duration=1.500s'
    )


async def test_one_line_per_connection_with_fingerprints(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from cryptography.hazmat.primitives import hashes

    caplog.set_level(logging.INFO, "albatross.endpoint")
    info = UnikernelInfoList(())
    async with with_fake_daemon(tmp_path, {"vmmd": reply_table({UnikernelInfo: info})}) as (
        _d,
        h,
    ):
        alice = h.pki.sub_ca("alice")
        identity = h.pki.leaf("a1", UnikernelInfo(), via=[alice])
        await h.run(identity)
    (record,) = [r for r in caplog.records if r.name == "albatross.endpoint"]
    line = record.getMessage()
    leaf_fp = identity.chain[0].fingerprint(hashes.SHA256()).hex()
    alice_fp = alice[0].fingerprint(hashes.SHA256()).hex()
    assert line.startswith(
        f'peer=test-peer chain="CN=a1 sha256:{leaf_fp} <- CN=alice sha256:{alice_fp}"'
        ' name="alice:a1" command="unikernel info" outcome="success: UnikernelInfoList"'
    )
    assert record.levelno == logging.INFO


def test_journal_handler_sends_native_datagrams(tmp_path: Path) -> None:
    path = tmp_path / "journal.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    handler = JournalHandler("albatross-tls-endpoint", path)
    logger = logging.getLogger("albatross.test-journal")
    logger.addHandler(handler)
    logger.propagate = False  # not into whatever sink an earlier test left on "albatross"
    try:
        logger.warning("peer=x outcome=%s", "refused")
        data = server.recv(65536)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        handler.close()
        server.close()
    assert data == (
        b"MESSAGE=peer=x outcome=refused\nPRIORITY=4\nSYSLOG_IDENTIFIER=albatross-tls-endpoint\n"
    )


def test_configure_logging_none_and_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("none", logging.INFO)
    logging.getLogger("albatross.endpoint").warning("hidden")
    configure_logging("stderr", logging.INFO)
    logging.getLogger("albatross.endpoint").warning("shown")
    for handler in logging.getLogger("albatross").handlers:
        handler.flush()  # written from a thread
    captured = capsys.readouterr()
    configure_logging("none", logging.INFO)
    logging.getLogger("albatross").propagate = True
    assert captured.out == ""
    assert "hidden" not in captured.err and "WARNING shown" in captured.err


def test_missing_journal_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tlsendpoint.connlog

    monkeypatch.setattr(tlsendpoint.connlog, "JOURNAL_SOCKET", tmp_path / "no-journal")
    pki = Pki(tmp_path)
    result = CliRunner().invoke(cli, ["--log", "journal", "--tmpdir", str(tmp_path), *_files(pki)])
    assert result.exit_code == 2
    assert "ERROR: couldn't install journal logging: no systemd journal socket" in result.output


class StuckSink(logging.Handler):
    """A log destination that stops taking records until released (a stalled pipe)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.unblock = threading.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.entered.set()
        assert self.unblock.wait(60)
        self.messages.append(record.getMessage())


def test_a_stalled_log_never_blocks_the_caller_and_says_what_it_dropped() -> None:
    sink = StuckSink()
    handler = BackgroundHandler(sink, backlog=3)
    logger = logging.getLogger("albatross.test-background")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("line %d", 0)
        assert sink.entered.wait(60)  # the writer thread is stuck in the sink with line 0
        for n in range(1, 10):
            logger.warning("line %d", n)  # returns although the sink does not take it
        assert not sink.unblock.is_set() and handler.dropped == 6
        sink.unblock.set()
        handler.flush()
        logger.warning("line %d", 10)
        handler.flush()
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert sink.messages == [
        "line 0", "line 1", "line 2", "line 3",
        "6 log records dropped: the log could not keep up", "line 10",
    ]  # fmt: skip


def test_the_background_handler_writes_tracebacks_and_everything_at_close() -> None:
    sink = StuckSink()
    sink.unblock.set()
    handler = BackgroundHandler(sink)
    logger = logging.getLogger("albatross.test-background-close")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        raise KeyError("why")
    except KeyError:
        logger.exception("internal error while serving %s", "peer")
    for n in range(100):
        logger.info("line %d", n)
    logger.removeHandler(handler)
    handler.close()  # as logging.shutdown at exit: what waits is written
    assert sink.messages[0].startswith("internal error while serving peer\nTraceback")
    assert "KeyError: 'why'" in sink.messages[0]
    assert sink.messages[1:] == [f"line {n}" for n in range(100)]
