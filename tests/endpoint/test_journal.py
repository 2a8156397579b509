"""The journal gets a connection's parts as fields of their own; stderr under systemd
leaves the timestamps to the journal."""

from __future__ import annotations

import logging
import socket
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.wire import UnikernelInfo, UnikernelInfoList
from tests.endpoint.fakedaemon import reply_table
from tests.endpoint.harness import with_fake_daemon
from tlsendpoint.connlog import (
    JOURNAL_FIELDS,
    BackgroundHandler,
    ConnectionRecord,
    JournalHandler,
    configure_logging,
    stderr_is_journal,
)


def parse_native(datagram: bytes) -> dict[str, str]:
    """journald's native protocol, read the way journald reads it (both field forms)."""
    fields: dict[str, str] = {}
    rest = datagram
    while rest:
        line, sep, after = rest.partition(b"\n")
        assert sep, f"unterminated field {rest!r}"
        if b"=" in line:
            key, _, value = line.partition(b"=")
            rest = after
        else:  # KEY \n length(le64) value \n
            key = line
            (size,) = struct.unpack_from("<Q", after)
            value, rest = after[8 : 8 + size], after[8 + size :]
            assert rest[:1] == b"\n"
            rest = rest[1:]
        assert key.decode() not in fields
        fields[key.decode()] = value.decode()
    return fields


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[tuple[socket.socket, Path]]:
    path = tmp_path / "journal.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(30)
    yield server, path
    server.close()


def test_fields_beside_the_message(journal: tuple[socket.socket, Path]) -> None:
    server, path = journal
    handler = JournalHandler("albatross-tls-endpoint", path)
    logger = logging.getLogger("albatross.test-journal-fields")
    logger.addHandler(handler)
    fields = {"PEER": "1.2.3.4:5", "CHAIN": "CN=a\nforged=1", "_PID": "1", "bad name": "x"}
    try:
        logger.warning("peer=1.2.3.4:5", extra={JOURNAL_FIELDS: fields})
        data = server.recv(65536)
    finally:
        logger.removeHandler(handler)
        handler.close()
    # a newline in a value uses the length-prefixed form: it cannot forge a field
    assert b"CHAIN\n" + struct.pack("<Q", 13) + b"CN=a\nforged=1\n" in data
    assert parse_native(data) == {
        "MESSAGE": "peer=1.2.3.4:5",
        "PRIORITY": "4",
        "SYSLOG_IDENTIFIER": "albatross-tls-endpoint",
        "PEER": "1.2.3.4:5",
        "CHAIN": "CN=a\nforged=1",
    }  # trusted (_PID) and invalid names are left to journald / dropped


def test_record_fields() -> None:
    record = ConnectionRecord("1.2.3.4:5", chain="CN=a sha256:00", name="x:y", command="c")
    record.outcome = "success: UnikernelInfoList"
    record.details += ["uploaded=42", "audit=ab12", "weird key=1"]
    assert record.fields(1.5) == {
        "PEER": "1.2.3.4:5",
        "CHAIN": "CN=a sha256:00",
        "NAME": "x:y",
        "COMMAND": "c",
        "OUTCOME": "success: UnikernelInfoList",
        "UPLOADED": "42",
        "AUDIT": "ab12",
        "DURATION": "1.500",
    }


async def test_a_served_connection_reaches_the_journal_with_its_fields(
    tmp_path: Path, journal: tuple[socket.socket, Path]
) -> None:
    server, path = journal
    logger = logging.getLogger("albatross.endpoint")
    handler = BackgroundHandler(JournalHandler("albatross-tls-endpoint", path))
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        info = UnikernelInfoList(())
        behaviours = {"vmmd": reply_table({UnikernelInfo: info})}
        async with with_fake_daemon(tmp_path, behaviours) as (_daemon, harness):
            await harness.run(harness.pki.leaf("a1", UnikernelInfo()))
        handler.flush()
        fields = parse_native(server.recv(65536))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        handler.close()
    assert fields["COMMAND"] == "unikernel info"
    assert fields["OUTCOME"] == "success: UnikernelInfoList"
    assert fields["NAME"] == ":a1"
    assert fields["CHAIN"].startswith("CN=a1 sha256:")
    assert float(fields["DURATION"]) >= 0
    assert fields["PRIORITY"] == "6"
    assert fields["MESSAGE"].startswith(f"peer={fields['PEER']} chain=")


def _log_to(stderr_file: Path, environ: dict[str, str]) -> str:
    with stderr_file.open("w") as stream:
        saved = sys.stderr
        sys.stderr = stream
        try:
            configure_logging("stderr", logging.INFO, environ=environ)
            logging.getLogger("albatross.endpoint").warning("refused")
            for handler in logging.getLogger("albatross").handlers:
                handler.flush()  # written from a thread
        finally:
            configure_logging("none", logging.INFO)
            logging.getLogger("albatross").propagate = True
            sys.stderr = saved
    return stderr_file.read_text()


def test_stderr_under_systemd_has_no_timestamps(tmp_path: Path) -> None:
    log = tmp_path / "stderr"
    log.touch()
    status = log.stat()
    environ = {"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}
    assert _log_to(log, environ) == "<4>refused\n"


@pytest.mark.parametrize("journal_stream", [None, "1:2", "garbage"])
def test_stderr_elsewhere_keeps_them(tmp_path: Path, journal_stream: str | None) -> None:
    """An inherited JOURNAL_STREAM naming another file (stderr redirected) does not count."""
    environ = {} if journal_stream is None else {"JOURNAL_STREAM": journal_stream}
    line = _log_to(tmp_path / "stderr", environ)
    assert line.endswith(" WARNING refused\n")
    assert line[:4].isdigit()  # the year of asctime


def test_stderr_is_journal_needs_a_real_descriptor() -> None:
    assert stderr_is_journal({"JOURNAL_STREAM": "1:2"}, -1) is False
