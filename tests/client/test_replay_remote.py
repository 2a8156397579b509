"""Replay every captured remote invocation: the real command line, the real CA files.

A fake endpoint with the captured server certificate (``certs/ca/root-server``)
trusts the captured root CA, reads the command from the leaf ``alba`` signs with
the case's own CA files (root, alice, bob, dave, Dave, pre-signed csrtick), and
answers with what the real daemon answered, the way albatross-tls-endpoint relays
it (a single reply under the derived name; streams unchanged).  ``alba`` must
print exactly what albatross-client printed and exit with its code; the command
must be the one the real endpoint sent to the daemon.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from client.cli import alba
from core.clock import fixed_clock
from core.routing import ReplyMode, route
from core.wire import (
    Header,
    Message,
    PolicyAdd,
    UnikernelCreate,
    decode_message,
    encode_message,
    frame,
)
from tests.client.helpers import Seen, fake_tls_server
from tests.vectors import CASES, CERTS, captured_at, case_frames

SERVER = CERTS / "ca" / "root-server.pem", CERTS / "ca" / "root-server.key"
TRUST = CERTS / "ca" / "root-cacert.pem"
#: Our deliberate difference: the endpoint refused the empty CN and closed; we exit 121.
DIFFERENT = {"002-policy-root-nopath"}
#: cmdliner prints its usage text for a missing file; we print only the error line.
STDERR_DIFFERS = {"011-create-image-missing"}


def remote_cases() -> list[str]:
    out = []
    for case in sorted(CASES.iterdir()):
        cmd = (case / "cmd.txt").read_text()
        if "--destination 127.0.0.1:18025" in cmd and "albatross-client" in cmd:
            out.append(case.name)
    return out


def _plain(command: object) -> object:
    if isinstance(command, UnikernelCreate) and command.config.compressed:
        image = zlib.decompress(command.config.image)
        config = dataclasses.replace(command.config, image=image, compressed=False)
        return dataclasses.replace(command, config=config)
    return command


def _conversations(case: Path) -> list[tuple[Message, list[bytes], list[bytes]]]:
    """Per daemon connection: the command, the relayed reply frames, the uploaded chunks."""
    conns: dict[tuple[str, int], tuple[list[bytes], list[bytes]]] = {}
    for fr in case_frames(case):
        pair = conns.setdefault((fr.sock, fr.conn), ([], []))
        pair[0 if fr.direction == "to_daemon" else 1].append(fr.body)
    out = []
    for to_daemon, from_daemon in conns.values():
        skip = 0
        while isinstance(decode_message(to_daemon[skip]).payload, PolicyAdd):
            skip += 1
        command = decode_message(to_daemon[skip])
        replies = from_daemon[skip:]
        mode = route(command.payload).mode  # type: ignore[arg-type]
        if mode is ReplyMode.SINGLE:
            first = decode_message(replies[0])
            relayed = [frame(encode_message(Message(Header(command.header.name), first.payload)))]
        else:
            relayed = [frame(body) for body in replies if body]
        out.append((command, relayed, to_daemon[skip + 1 :]))
    return out


@pytest.mark.parametrize("case_id", remote_cases())
def test_replay_remote(case_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES / case_id
    conversations = _conversations(case)
    replies = iter(conversations)

    def responder(_seen: Seen) -> list[bytes]:
        conversation = next(replies, None)  # none: the real endpoint closed at once (002)
        return conversation[1] if conversation is not None else []

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.chdir(case)
    words = shlex.split((case / "cmd.txt").read_text())
    words = words[words.index("albatross-client") + 1 :]
    # Both sides judge the captured chains as at the capture, not today.
    when = captured_at(case)
    with fake_tls_server(*SERVER, TRUST, responder, now=when) as (port, seen):
        args = [f"127.0.0.1:{port}" if w == "127.0.0.1:18025" else w for w in words]
        result = CliRunner().invoke(alba, args, prog_name="albatross-client", obj=fixed_clock(when))

    expected_rc = int((case / "rc.txt").read_text())
    streamed = expected_rc == 124 and "timeout" in (case / "cmd.txt").read_text()
    expected = (case / "stdout.txt").read_text()
    if case_id in DIFFERENT:
        assert result.exit_code == 121
        assert "closed the connection without replying" in result.stdout
        return
    assert result.exit_code == (0 if streamed else expected_rc), result.output
    if streamed:
        assert result.stdout.startswith(expected)
        expected = result.stdout
    stdout = re.sub(re.escape(str(tmp_path)) + r"/(\S+)\.\S+", r"out/\1.TS", result.stdout)
    assert stdout == re.sub(r"out/(\S+)\.\S+", r"out/\1.TS", expected)
    if case_id not in STDERR_DIFFERS:
        assert result.stderr == (case / "stderr.txt").read_text()

    assert len(seen) == len(conversations)
    for got, (command, _, upload) in zip(seen, conversations, strict=True):
        assert _plain(got.command) == _plain(command.payload)
        if upload:
            assert zlib.decompress(b"".join(got.data)) == zlib.decompress(b"".join(upload))
