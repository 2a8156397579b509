"""Fleets: ``alba --remote a --remote b CMD`` on two fake endpoints, a host down, a slow one."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from client.cli import alba
from client.fleet import SOME_FAILED
from client.output import to_json
from client.remotes import RemoteEntry, load_groups, load_remotes, save_remotes
from core.wire import Name, StringReply, UnikernelDestroy
from tests.client.helpers import Pki, Seen, fake_endpoint, reply
from tests.client.stack import Stack, running_stack
from tests.client.test_e2e import TICKER


def run(args: list[str]) -> Result:
    return CliRunner().invoke(alba, args, prog_name="alba")


@pytest.fixture(autouse=True)
def remotes_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cfg" / "remotes.toml"
    monkeypatch.setenv("ALBATROSS_REMOTES", str(path))
    return path


def destroyed(seen: Seen) -> list[bytes]:
    return [reply(Name.parse(f":{seen.cn}"), StringReply("destroyed unikernel"))]


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then closed): connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def entry(pki: Pki, port: int) -> RemoteEntry:
    return RemoteEntry(
        f"127.0.0.1:{port}",
        pki.path("cacert.pem"),
        pki.path("ca.key"),
        pki.path("cacert.pem"),
        "albatross.test",
    )


@contextmanager
def fleet(
    pki: Pki, remotes_file: Path, *, slow: threading.Event | None = None
) -> Iterator[list[list[Seen]]]:
    """Remotes a and b (fake endpoints), c (down), group `web` = a, b, c; and `slow` if asked."""
    with ExitStack() as stack:
        seens = []
        entries = {}
        for name in ("a", "b"):
            port, seen = stack.enter_context(fake_endpoint(pki, destroyed))
            entries[name] = entry(pki, port)
            seens.append(seen)
        entries["c"] = entry(pki, closed_port())
        if slow is not None:

            def never(seen: Seen) -> list[bytes]:
                slow.wait(60)  # until the test ends: the client must give up first
                return []

            port, seen = stack.enter_context(fake_endpoint(pki, never))
            entries["slow"] = entry(pki, port)
        remotes_file.parent.mkdir(parents=True)
        remotes_file.write_text('[groups]\nweb = ["a", "b", "c"]\n')
        save_remotes(entries)  # keeps the group
        yield seens


def test_one_command_on_three_hosts_one_down(tmp_path: Path, remotes_file: Path) -> None:
    pki = Pki(tmp_path)
    with fleet(pki, remotes_file) as (seen_a, seen_b):
        result = run(["--remote", "web", "destroy", "u1"])
        down = load_remotes()["c"].destination
    assert result.exit_code == SOME_FAILED, result.output
    lines = sorted(result.stdout.splitlines())  # albatross-client logs errors on stdout
    assert lines == [
        "a: host [unikernel: :u1]: success: destroyed unikernel",
        "b: host [unikernel: :u1]: success: destroyed unikernel",
        f"c: alba: [ERROR] connect failed with all attempts to connect to {down} failed",
    ]
    assert result.stderr == "alba: fleet: 2 of 3 remotes succeeded; failed: c (exit 122)\n"
    assert [s.command for s in (*seen_a, *seen_b)] == [UnikernelDestroy()] * 2
    assert load_groups() == {"web": ("a", "b", "c")}


@pytest.mark.parametrize("as_json", [["--json"], ["--format", "json"], ["--format=json"]])
def test_json_lines_carry_their_remote(
    tmp_path: Path, remotes_file: Path, as_json: list[str]
) -> None:
    pki = Pki(tmp_path)
    with fleet(pki, remotes_file):
        result = run(["--remote", "a", "--remote", "b", "--remote", "a", "destroy", "u1", *as_json])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["remote"] for r in records[:-1]) == ["a", "b"]  # a once, though given twice
    assert all(r["reply"] == to_json(StringReply("destroyed unikernel")) for r in records[:-1])
    assert records[-1] == {
        "schema": 1,
        "record": "fleet",
        "results": {"a": 0, "b": 0},
        "exit_code": 0,
    }


def test_a_slow_host_is_stopped_at_its_deadline(tmp_path: Path, remotes_file: Path) -> None:
    pki = Pki(tmp_path)
    release = threading.Event()
    try:
        with fleet(pki, remotes_file, slow=release):
            # generous for the fast hosts' process start; the slow one never answers
            result = run(["--fleet-timeout", "12", "--remote", "a", "--remote", "slow",
                          "destroy", "u1"])  # fmt: skip
            release.set()  # the fake's handler returns before the fake is stopped
    finally:
        release.set()
    assert result.exit_code == SOME_FAILED, result.output
    assert result.stdout == "a: host [unikernel: :u1]: success: destroyed unikernel\n"
    assert result.stderr.splitlines()[-2:] == [
        "slow: alba: no result within 12 s: stopped",
        "alba: fleet: 1 of 2 remotes succeeded; failed: slow (stopped at the deadline)",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--remote", "nope", "info"], "alba: unknown remote 'nope' (known remotes and groups: a,"),
        (["--remote", "a", "remote", "list"], "alba: remote list takes no destination"),
        (["--remote", "a", "info", "-d", "h"], "alba: -d cannot be combined with alba --remote"),
        (["--remote", "a", "info", "--remote=b"], "alba: --remote cannot be combined with"),
        (["--remote", "a"], "alba: alba --remote: give the command to run on the remotes"),
    ],
)
def test_fleet_usage_errors(
    tmp_path: Path, remotes_file: Path, args: list[str], message: str
) -> None:
    remotes_file.parent.mkdir(parents=True)
    save_remotes({"a": entry(Pki(tmp_path), 1), "b": entry(Pki(tmp_path), 2)})
    result = run(args)
    assert result.exit_code == 124
    assert " ".join(result.stderr.split()).startswith(message)
    assert result.stdout == ""


def test_a_group_named_like_a_remote_is_refused(tmp_path: Path, remotes_file: Path) -> None:
    remotes_file.parent.mkdir(parents=True)
    remotes_file.write_text('[groups]\na = ["a"]\n')
    save_remotes({"a": entry(Pki(tmp_path), 1)})
    result = run(["--remote", "a", "info"])
    assert (result.exit_code, result.stderr) == (
        124,
        "alba: 'a' is both a remote and a group: rename one\n",
    )
    assert set(load_remotes()) == {"a"}


def test_fleet_of_two_real_hosts_and_one_down(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two stand-in + endpoint hosts (the operator's CA from the `stack` fixture), one down."""
    op = Path.cwd()
    (tmp_path / "second").mkdir()
    files = [op / "cacert.pem", op / "server.pem", op / "server.key"]
    with running_stack(tmp_path / "second", *files) as second:
        save_remotes(
            {
                name: RemoteEntry(
                    f"127.0.0.1:{port}",
                    str(op / "cacert.pem"),
                    str(op / "ca.key"),
                    str(op / "cacert.pem"),
                    "127.0.0.1",
                )
                for name, port in (("h1", stack.port), ("h2", second.port), ("down", closed_port()))
            }
        )
        created = run(["--remote", "h1", "--remote", "h2", "create", "t1", str(TICKER)])
        assert created.exit_code == 0, created.output
        assert sorted(created.stdout.splitlines()) == [
            "h1: host [unikernel: :t1]: success: created unikernel",
            "h2: host [unikernel: :t1]: success: created unikernel",
        ]
        listed = run(["--remote", "h1", "--remote", "down", "--remote", "h2", "info", "--json"])
        destroyed = run(["--remote", "h1", "--remote", "h2", "destroy", "t1"])
    assert listed.exit_code == SOME_FAILED, listed.output
    records = [json.loads(line) for line in listed.stdout.splitlines()]
    by_remote = {r["remote"]: r for r in records[:-1]}
    assert by_remote["down"]["record"] == "error" and by_remote["down"]["exit_code"] == 122
    for host in ("h1", "h2"):
        assert '":t1"' in json.dumps(by_remote[host]["reply"]), by_remote[host]
    assert records[-1] == {
        "schema": 1,
        "record": "fleet",
        "results": {"h1": 0, "down": 122, "h2": 0},
        "exit_code": SOME_FAILED,
    }
    assert destroyed.exit_code == 0, destroyed.output
