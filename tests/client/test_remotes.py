"""Named remotes (remotes.toml), ``certificate`` with a pre-signed chain, and a smoke test."""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ca import profiles
from client.cli import alba
from client.remotes import RemoteEntry, load_remotes, save_remotes
from core.wire import Name, StringReply, UnikernelDestroy, UnikernelInfo, UnikernelInfoList
from tests.client.helpers import Pki, Seen, fake_daemon, fake_endpoint, key_pem, pem, reply
from tests.interrupt import interruptible


def run(args: list[str]) -> Result:
    return CliRunner().invoke(alba, args, prog_name="alba")


@pytest.fixture(autouse=True)
def remotes_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cfg" / "remotes.toml"
    monkeypatch.setenv("ALBATROSS_REMOTES", str(path))
    return path


def test_add_list_use_remove(tmp_path: Path, remotes_file: Path) -> None:
    pki = Pki(tmp_path)

    def responder(seen: Seen) -> list[bytes]:
        return [reply(Name.parse(":"), UnikernelInfoList(()))]

    with fake_endpoint(pki, responder) as (port, seen):
        added = run(
            [
                "remote",
                "add",
                "home",
                "-d",
                f"127.0.0.1:{port}",
                "--ca",
                pki.path("cacert.pem"),
                "--ca-key",
                pki.path("ca.key"),
                "--server-ca",
                pki.path("cacert.pem"),
                "--server-name",
                "albatross.test",
            ]
        )
        assert added.exit_code == 0, added.output
        assert added.stdout == f"remote home saved in {remotes_file}\n"
        assert os.stat(remotes_file).st_mode & 0o777 == 0o600
        used = run(["info", "--remote", "home"])
    assert (used.exit_code, used.stdout) == (0, "host [unikernel: :]: no unikernels\n")
    assert seen[0].command == UnikernelInfo()
    listed = run(["remote", "list"])
    assert listed.stdout.startswith(
        f"home: 127.0.0.1:{port} (server name albatross.test), expires "
    )
    again = run(
        [
            "remote",
            "add",
            "home",
            "-d",
            "h",
            "--ca",
            pki.path("cacert.pem"),
            "--ca-key",
            pki.path("ca.key"),
            "--server-ca",
            pki.path("cacert.pem"),
        ]
    )
    assert again.exit_code == 124
    assert again.stderr == "alba: remote 'home' exists already (use --force to replace it)\n"
    assert run(["remote", "remove", "home"]).stdout == "remote home removed\n"
    assert load_remotes() == {}


def test_unknown_remote() -> None:
    result = run(["info", "--remote", "nowhere"])
    assert result.exit_code == 124
    assert result.stderr == "alba: unknown remote 'nowhere' (known: none)\n"


def test_remote_and_socket_are_exclusive() -> None:
    result = run(["info", "--remote", "x", "--socket", "/nonexistent"])
    assert result.exit_code == 124
    assert "mutually" in result.stderr


def test_broken_remotes_file(remotes_file: Path) -> None:
    remotes_file.parent.mkdir(parents=True)
    remotes_file.write_text('[remotes.x]\ndestination = "h"\n')
    result = run(["info", "--remote", "x"])
    assert result.exit_code == 124
    # cmdliner-style wrapping depends on the path length; compare the words.
    assert " ".join(result.stderr.split()) == (
        f"alba: remotes file {remotes_file}: remote 'x': missing ['ca', 'ca_key', 'server_ca']"
    )


def test_save_and_load_round_trip(remotes_file: Path) -> None:
    entries = {"a b": RemoteEntry('h"1', "c", "k", "s", None, "p256")}
    save_remotes(entries)
    assert load_remotes() == entries


@pytest.mark.parametrize(
    "awkward",
    ['a"b', "back\\slash", "tab\tnew\nline", "bell\x07", "ünï ☃", "[remotes.x]", "a.b"],
)
def test_save_round_trips_awkward_text(remotes_file: Path, awkward: str) -> None:
    """tomli-w writes it; tomllib reads the same names and values back, in one table."""
    entries = {awkward: RemoteEntry(awkward, "c", "k", "s", awkward, None), "plain": PLAIN}
    save_remotes(entries)
    assert load_remotes() == entries
    assert stat.S_IMODE(remotes_file.stat().st_mode) == 0o600


PLAIN = RemoteEntry("h:1025", "c", "k", "s")


def test_concurrent_saves_never_clobber_each_other(remotes_file: Path) -> None:
    """Two `alba remote` commands at once: each writes a temporary file of its own (it was
    one fixed name, so one command renamed the other's half-written file away)."""
    versions = [{f"r{n}": RemoteEntry(f"h{n}:1025", "c" * 5000, "k", "s")} for n in range(4)]
    failures: list[BaseException] = []

    def saver(entries: dict[str, RemoteEntry]) -> None:
        try:
            for _ in range(30):
                save_remotes(entries)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=saver, args=(v,)) for v in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    assert load_remotes() in versions
    assert [p.name for p in remotes_file.parent.iterdir()] == ["remotes.toml"]


def test_certificate_runs_presigned_leaf(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    key = profiles.generate_key()
    now = dt.datetime.now(dt.UTC)
    leaf = profiles.leaf(
        pki.root_cert, pki.root_key, key.public_key(), "x", UnikernelDestroy(), now
    )
    (tmp_path / "x.pem").write_bytes(pem(leaf))
    (tmp_path / "x.key").write_bytes(key_pem(key))

    def responder(_seen: Seen) -> list[bytes]:
        return [reply(Name.parse(":x"), StringReply("destroyed unikernel"))]

    with fake_endpoint(pki, responder) as (port, seen):
        result = run(
            [
                "certificate",
                str(tmp_path / "x.pem"),
                str(tmp_path / "x.key"),
                "-d",
                f"127.0.0.1:{port}",
                "--server-ca",
                pki.path("cacert.pem"),
            ]
        )
    assert (result.exit_code, result.stdout) == (
        0, "host [unikernel: :x]: success: destroyed unikernel\n")  # fmt: skip
    assert seen[0].cn == "x"
    (tmp_path / "other.key").write_bytes(key_pem(profiles.generate_key()))
    wrong = run(["certificate", str(tmp_path / "x.pem"), str(tmp_path / "other.key"),
                 "-d", "127.0.0.1:9", "--server-ca", pki.path("cacert.pem")])  # fmt: skip
    assert (wrong.exit_code, wrong.stdout) == (
        124, "alba: [ERROR] Public key of certificate doesn't match private key\n")  # fmt: skip
    missing = run(["certificate", str(tmp_path / "x.pem"), str(tmp_path / "x.key")])
    assert (missing.exit_code, missing.stderr) == (124, "alba: no destination provided\n")


def test_socket_dash_prints_command() -> None:
    result = run(["destroy", "hello", "--socket", "-"])
    assert result.exit_code == 121
    assert result.stdout.startswith("out:\n00000000: 30 ")


@pytest.mark.parametrize(
    ("flags", "lines"), [(["-q"], 0), (["--verbosity=error"], 1), (["--verbosity=warning"], 2)]
)
def test_local_connect_failure_by_level(tmp_path: Path, flags: list[str], lines: int) -> None:
    result = run(["info", "--tmpdir", str(tmp_path), *flags])
    assert result.exit_code == 122
    expected = [
        f'alba: [WARNING] error Unix.Unix_error(Unix.ENOENT, "connect", "") connecting to socket'
        f" unix domain socket {tmp_path}/util/vmmd.sock",
        f"alba: [ERROR] couldn't connect to unix domain socket {tmp_path}/util/vmmd.sock",
    ]
    assert result.stdout.splitlines() == {0: [], 1: expected[1:], 2: expected}[lines]


def test_local_connect_failure(tmp_path: Path) -> None:
    result = run(["info", "--tmpdir", str(tmp_path)])
    assert result.exit_code == 122
    # albatross-client 2.7.2's two lines (Vmm_lwt.connect's warning, connect_local's error)
    sock = f"unix domain socket {tmp_path}/util/vmmd.sock"
    assert result.stdout == (
        f'alba: [WARNING] error Unix.Unix_error(Unix.ENOENT, "connect", "") connecting to socket'
        f" {sock}\n"
        f"alba: [ERROR] couldn't connect to {sock}\n"
    )


def test_smoke_subprocess(tmp_path: Path) -> None:
    """The installed entry point runs, prints, and exits with albatross's codes."""
    sock = tmp_path / "vmmd.sock"

    def responder(_seen: Seen) -> list[bytes]:
        return [reply(Name.parse(":t"), StringReply("destroyed unikernel"))]

    alba_bin = Path(sys.executable).parent / "alba"
    with fake_daemon(sock, responder):
        done = subprocess.run(
            [str(alba_bin), "destroy", "t", "--socket", str(sock)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (
        0, "host [unikernel: :t]: success: destroyed unikernel\n", "")  # fmt: skip
    bad = subprocess.run([str(alba_bin), "frobnicate"], capture_output=True, text=True,
                         timeout=60, check=False)  # fmt: skip
    assert bad.returncode == 124
    assert "No such command 'frobnicate'" in bad.stderr


def test_ctrl_c_ends_console_follow(tmp_path: Path) -> None:
    """A real SIGINT while following a console: exit 0 and a message on stderr.

    Event by event, no timing: the subscription reply is printed (alba follows),
    then SIGINT, then the fake sees alba close the connection, then alba exits.
    The fake holds the connection for as long as alba keeps it, so nothing but
    the signal can end the follow.
    """
    import signal
    import threading

    pki = Pki(tmp_path)

    def responder(_seen: Seen) -> list[bytes]:
        return [reply(Name.parse(":t"), StringReply("subscribed"))]

    alba_bin = Path(sys.executable).parent / "alba"
    closed = threading.Event()
    with fake_endpoint(pki, responder, hold=True, closed=closed) as (port, _seen):
        proc = subprocess.Popen(
            interruptible([str(alba_bin), "console", "t", *pki.remote_args(port)]),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()  # the subscription reply: alba now follows
            assert first == "host [unikernel: :t]: success: subscribed\n"
            assert not closed.is_set()
            proc.send_signal(signal.SIGINT)
            assert closed.wait(120), "alba kept the connection open after SIGINT"
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert (proc.returncode, out, err) == (0, "", "alba: interrupted, stopped following\n"), err


@pytest.mark.parametrize(
    ("raised", "code", "stderr"),
    [
        (KeyboardInterrupt(), 0, "alba: interrupted, stopped following\n"),
        # trio hands Ctrl-C out of a nursery as a group of interrupts: the same Ctrl-C
        (
            BaseExceptionGroup("", [KeyboardInterrupt()]),
            0,
            "alba: interrupted, stopped following\n",
        ),
        # a group with anything else in it is not an interrupt: it is not swallowed
        (BaseExceptionGroup("", [KeyboardInterrupt(), OSError("boom")]), None, None),
    ],
)
def test_an_interrupt_in_any_wrapping_ends_the_follow(
    raised: BaseException, code: int | None, stderr: str | None
) -> None:
    """The signal may reach alba inside a trio nursery or outside one: the same end."""
    import click

    from client.cli import AlbaGroup

    @click.group(cls=AlbaGroup)
    def group() -> None:
        pass

    @group.command()
    def follow() -> None:
        raise raised

    if code is None:
        with pytest.raises(BaseExceptionGroup):
            group.main(["follow"], prog_name="alba")
        return
    result = CliRunner().invoke(group, ["follow"], prog_name="alba", standalone_mode=True)
    assert (result.exit_code, result.stderr) == (code, stderr)
