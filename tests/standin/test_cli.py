"""``albatross-standin``: CliRunner for the error paths, a real process for start and stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from core.wire import (
    FrameDecoder,
    Header,
    Message,
    Name,
    Payload,
    Policy,
    PolicyInfo,
    PolicyList,
    UnikernelInfo,
    UnikernelInfoList,
    decode_message,
    encode_message,
    frame,
)
from standin.cli import main
from standin.testing import StandinProcess, standin_process

STARTUP_TIMEOUT = 20.0


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # unix socket paths are short; pytest's tmp_path may be too deep
    path = Path(tempfile.mkdtemp(prefix="sti-", dir="/tmp"))
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def test_help() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "--bridge" in result.output and "--stats-interval" in result.output


def test_dbdir_is_an_alias_of_state_dir(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 100)
    result = CliRunner().invoke(main, ["--tmpdir", str(deep), "--dbdir", str(tmp_path / "s")])
    assert result.exit_code == 1  # got past option parsing: the socket path is the problem
    assert "too long for a unix socket" in result.output


def test_missing_options() -> None:
    result = CliRunner().invoke(main, [])
    assert result.exit_code == 2
    assert "Missing option '--tmpdir'" in result.output


def test_bad_numbers_are_refused() -> None:
    result = CliRunner().invoke(
        main, ["--tmpdir", "/tmp/x", "--state-dir", "/tmp/y", "--cpus", "0"]
    )
    assert result.exit_code == 2
    assert "Invalid value for '--cpus'" in result.output


def test_socket_path_too_long(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 100)
    result = CliRunner().invoke(main, ["--tmpdir", str(deep), "--state-dir", str(tmp_path / "s")])
    assert result.exit_code == 1
    assert "is too long for a unix socket; use a shorter --tmpdir" in result.output


def start(short_dir: Path, *extra: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "standin",
            "--tmpdir",
            str(short_dir / "run"),
            "--state-dir",
            str(short_dir / "state"),
            *extra,
        ],
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    sock = short_dir / "run" / "util" / "vmmd.sock"
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the stand-in did not start: {proc.communicate()[1]!r}")
        time.sleep(0.05)
    return proc


def info(short_dir: Path) -> object:
    return info_at(short_dir / "run" / "util" / "vmmd.sock")


def info_at(path: Path) -> object:
    return ask(path, UnikernelInfo())


def ask(path: Path, payload: Payload) -> object:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(frame(encode_message(Message(Header(Name(), 1), payload))))
        decoder = FrameDecoder()
        while (body := decoder.next_frame()) is None:
            decoder.feed(s.recv(65536))
        assert isinstance(body, bytes)
        return decode_message(body).payload


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_starts_answers_and_stops_cleanly(short_dir: Path, signum: int) -> None:
    proc = start(short_dir, "--bridge", "br0", "--bridge", "service")
    try:
        assert info(short_dir) == UnikernelInfoList(())
        with pytest.raises(SystemExit):  # a second daemon on the same sockets is refused
            main(["--tmpdir", str(short_dir / "run"), "--state-dir", str(short_dir / "x")])
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert not (short_dir / "run" / "util" / "vmmd.sock").exists()
    assert b"Traceback" not in err


def root_policy(proc: StandinProcess) -> Policy:
    reply = ask(proc.socket("vmmd"), PolicyInfo())
    assert isinstance(reply, PolicyList)
    return dict(reply.policies)[Name()]


def test_by_default_a_bare_host_as_albatrossd_discovers_it(short_dir: Path) -> None:
    # albatrossd's root policy (vmm_unix.ml root_policy, vmm_stubs.c): the online CPUs, the
    # physical memory, the size of the file system of the block directory, the bridges found
    with standin_process(short_dir / "run", short_dir / "state") as proc:
        found = root_policy(proc)
    disk = os.statvfs(short_dir)
    assert found == Policy(
        (1 << 62) - 1,
        frozenset(range(os.sysconf("SC_NPROCESSORS_ONLN"))),
        os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1 << 20),
        disk.f_blocks * disk.f_frsize // (1 << 20),
        frozenset(),
    )


def test_options_set_the_host(short_dir: Path) -> None:
    chosen = ["--bridge", "service", "--bridge", "br0", "--cpus", "3", "--memory", "100",
              "--block-space", "0"]  # fmt: skip
    with standin_process(short_dir / "run", short_dir / "state", *chosen) as proc:
        found = root_policy(proc)
    assert found == Policy(
        (1 << 62) - 1, frozenset({0, 1, 2}), 100, 0, frozenset({"service", "br0"})
    )
    with standin_process(short_dir / "run", short_dir / "state", "--no-bridges") as proc:
        assert root_policy(proc).bridges == frozenset()


def test_no_bridges_and_a_bridge_contradict() -> None:
    result = CliRunner().invoke(
        main, ["--tmpdir", "/tmp/x", "--state-dir", "/tmp/y", "--no-bridges", "--bridge", "br0"]
    )
    assert result.exit_code == 2
    assert "--no-bridges cannot be combined with --bridge" in result.output


def test_standin_process_helper(short_dir: Path) -> None:
    with standin_process(short_dir / "run", short_dir / "state", "--cpus", "4") as proc:
        assert info_at(proc.socket("vmmd")) == UnikernelInfoList(())
        assert proc.popen.poll() is None
    assert proc.popen.returncode == 0
    assert not proc.socket("vmmd").exists()
