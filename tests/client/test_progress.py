"""Progress bars: on a terminal (a pseudo-terminal here) a bar with total, percentage and
rate that ends its line before the reply; on a pipe, not one progress byte."""

from __future__ import annotations

import io
import os
import pty
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import Encoding

from client.cli import alba
from client.commands import UnikernelOptions, build_create
from client.progress import SHOW_FROM, Meter, make_meter
from core.wire.grammar import encode_extension
from tests.client.helpers import Pki
from tests.client.stack import Stack
from tests.client.test_e2e import TICKER, root_args, run

ALBA = Path(sys.executable).parent / "alba"
#: CSI sequences and the other escapes rich writes to a terminal.
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
DEADLINE = 120.0


def on_terminal(args: list[str]) -> tuple[int, str]:
    """Run alba with stdout and stderr on one pseudo-terminal; everything it wrote."""
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "120", "LINES": "40"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([str(ALBA), *args], stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=slave, env=env, close_fds=True)  # fmt: skip
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + DEADLINE
    try:
        while time.monotonic() < deadline:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def on_pipes(args: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(ALBA), *args], capture_output=True, timeout=DEADLINE,
                          stdin=subprocess.DEVNULL)  # fmt: skip


def noise(size: int) -> bytes:
    """Incompressible, and the same on every run."""
    return random.Random(size).randbytes(size)


def lines_of(screen: str) -> list[str]:
    return [line for line in ANSI.sub("", screen).split("\n") if line.strip()]


def test_set_block_and_dump_block_show_a_bar_on_a_terminal_only(
    stack: Stack, tmp_path: Path
) -> None:
    assert run(["create-block", "p1", "4", *root_args(stack)]).exit_code == 0
    data = tmp_path / "data.bin"
    data.write_bytes(noise(3 << 20))
    args = ["set-block", "p1", str(data), *root_args(stack)]
    code, screen = on_terminal(args)
    assert code == 0, screen
    shown = lines_of(screen)
    # The last drawing of the bar: label, 100 %, the total in MiB, a rate; then the reply
    # alone on its line.
    assert shown[-1] == "host [unikernel: :p1]: success: set block device"
    bar = shown[-2]
    assert bar.startswith("uploading ")
    assert "100%" in bar and "3.0/3.0 MiB" in bar and "MiB/s" in bar

    piped = on_pipes(args)
    assert (piped.returncode, piped.stdout, piped.stderr) == (
        0,
        b"host [unikernel: :p1]: success: set block device\n",
        b"",
    )

    code, screen = on_terminal(["dump-block", "p1", "--compression-level", "0",
                                *root_args(stack)])  # fmt: skip
    assert code == 0, screen
    shown = lines_of(screen)
    assert shown[0] == "host [unikernel: :p1]: block device compressed false"
    assert shown[1].startswith("downloading ") and "MiB" in shown[1] and "/s" in shown[1]
    assert shown[2].startswith("dumped to ")
    assert len(shown) == 3


def test_create_shows_the_certificate_upload(stack: Stack, tmp_path: Path) -> None:
    # A valid image with 2 MiB of incompressible padding after it: the chain is ~2 MiB.
    image = tmp_path / "big.hvt"
    image.write_bytes(TICKER.read_bytes() + noise(2 << 20))
    args = ["create", "big", str(image), "--compression-level", "0", *root_args(stack)]
    code, screen = on_terminal(args)
    shown = lines_of(screen)
    assert shown[0].startswith("sending certificate ")
    assert "100%" in shown[0] and "MiB" in shown[0] and "/s" in shown[0]
    assert shown[1:] == ["host [unikernel: :big]: success: created unikernel"], screen
    assert code == 0
    piped = on_pipes(["create", "big2", str(image), "--compression-level", "0",
                      *root_args(stack)])  # fmt: skip
    assert (piped.returncode, piped.stderr) == (0, b"")
    assert piped.stdout == b"host [unikernel: :big2]: success: created unikernel\n"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_meter_off_a_terminal_and_no_bar_for_small_transfers() -> None:
    assert make_meter("x", io.StringIO()) is None
    screen = Terminal()
    meter = make_meter("x", screen)
    assert isinstance(meter, Meter)
    meter.begin(SHOW_FROM - 1, "small")
    meter(SHOW_FROM - 1)
    meter.finish()
    assert screen.getvalue() == ""
    meter.begin(SHOW_FROM, "large")
    meter(SHOW_FROM)
    meter.finish()
    assert lines_of(screen.getvalue())[-1].startswith("large ")
    assert ANSI.sub("", screen.getvalue()).endswith("1.0/1.0 MiB ? 0:00:00\n")


@pytest.mark.parametrize("level", ["0", "9"])
def test_a_create_above_the_certificate_limit_says_what_works(tmp_path: Path, level: str) -> None:
    pki = Pki(tmp_path)
    image = tmp_path / "huge.hvt"
    image.write_bytes(TICKER.read_bytes() + noise(17 << 20))  # level 9 cannot save it
    result = CliRunner().invoke(
        alba, ["create", "huge", str(image), "--compression-level", level,
               *pki.remote_args(9)], prog_name="alba",
    )  # fmt: skip
    # The chain's size moves by an octet with the CA's random serial: count it.
    data = image.read_bytes()
    command = build_create(UnikernelOptions(), data, int(level), False)
    chain = len(pki.root_cert.public_bytes(Encoding.DER))
    needed = len(encode_extension(command)) + 2048 + chain
    room = 16777216 - (needed - len(command.config.image))
    if level == "0":
        image_words = "image of 17865784"
        advice = "compress it (--compression-level 9), use an image of less than"
    else:
        image_words = "compressed image of 17834752"
        advice = "use an image that compresses to less than"
    assert (result.exit_code, result.stdout) == (
        124,
        f"alba: [ERROR] couldn't generate certificate chain: the {image_words} octets does "
        "not fit in a certificate: TLS carries the whole chain (here about "
        f"{needed} octets) in one message of at most 16777216 octets (16 MiB); {advice} "
        f"about {room} octets, or create it on the host through the local socket "
        "(alba create --socket ...), which needs no certificate\n",
    )
