"""End to end: ``alba`` against our TLS endpoint and the daemon stand-in.

The operator story of the README, with real commands: ``generate`` a root CA and
the server certificate, delegate a quota to alice with ``ca delegate``, alice
imports the bundle as a named remote and delegates part of it to bob; quota
refusals come from the client (memory, CPU: exit 124, nothing sent) and from
the daemon (unikernel count: exit 117).  Local mode talks to the stand-in's
sockets directly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from client.cli import alba
from tests.client.stack import Stack
from tests.vectors import CASES

TICKER = CASES / "005-create-ticker-args" / "fake_ticker.hvt"
PROG = "albatross-client"


def run(args: list[str]) -> Result:
    return CliRunner().invoke(alba, args, prog_name=PROG)


def root_args(stack: Stack) -> list[str]:
    return ["--destination", f"127.0.0.1:{stack.port}", "--ca", "cacert.pem", "--ca-key",
            "ca.key", "--server-ca", "cacert.pem", "--server-name", "127.0.0.1"]  # fmt: skip


def test_delegation_story(stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = run(["info", *root_args(stack)])
    assert (info.exit_code, info.stdout) == (0, "host [unikernel: :]: no unikernels\n")

    endpoint = f"127.0.0.1:{stack.port}"
    made = run(["ca", "delegate", "alice", "2", "--mem", "64", "--size", "100",
                "--bridge", "service", "--ca", "cacert.pem", "--ca-key", "ca.key",
                "--server-ca", "cacert.pem", "--endpoint", endpoint,
                "--server-name", "127.0.0.1"])  # fmt: skip
    assert made.exit_code == 0, made.output

    imported = run(["remote", "import", str(tmp_path / "op" / "alice.bundle")])
    assert imported.exit_code == 0, imported.output
    assert imported.stdout.startswith("remote alice saved in ")

    created = run(["create", "a1", str(TICKER), "--mem", "32", "--remote", "alice"])
    assert (created.exit_code, created.stdout) == (
        0, "host [unikernel: alice:a1]: success: created unikernel\n")  # fmt: skip

    too_big = run(["create", "a2", str(TICKER), "--mem", "128", "--remote", "alice"])
    assert too_big.exit_code == 124
    assert too_big.stdout == (
        "albatross-client: [ERROR] couldn't generate certificate chain: 128 MB memory assigned "
        "to unikernel exceeds policy (64MB)\n"
    )

    second = run(["create", "a2", str(TICKER), "--mem", "16", "--remote", "alice"])
    assert second.exit_code == 0, second.output
    third = run(["create", "a3", str(TICKER), "--mem", "16", "--remote", "alice"])
    assert third.exit_code == 117
    assert third.stdout.startswith(
        "albatross-client: [WARNING] host [unikernel: alice:a3]: command failed "
    )

    # alice delegates to bob from her own bundle; bob imports it.
    alice_dir = tmp_path / "alice"
    alice_dir.mkdir()
    monkeypatch.chdir(alice_dir)
    sub = run(["ca", "delegate", "bob", "1", "--mem", "32", "--size", "10", "--bridge",
               "service", "--bundle", str(tmp_path / "op" / "alice.bundle")])  # fmt: skip
    assert sub.exit_code == 0, sub.output
    assert run(["remote", "import", "bob.bundle"]).exit_code == 0

    b1 = run(["create", "b1", str(TICKER), "--mem", "16", "--remote", "bob"])
    assert (b1.exit_code, b1.stdout) == (
        0, "host [unikernel: alice:bob:b1]: success: created unikernel\n")  # fmt: skip
    over = run(["create", "b1x", str(TICKER), "--mem", "48", "--remote", "bob"])
    assert over.exit_code == 124
    assert "48 MB memory assigned to unikernel exceeds policy (32MB)" in over.stdout

    bob_info = run(["info", "--remote", "bob"])
    assert bob_info.exit_code == 0
    assert bob_info.stdout.startswith("host [unikernel: alice:bob:]: [unikernel: :b1]: typ solo5")

    gone = run(["destroy", "b1", "--remote", "bob"])
    assert (gone.exit_code, gone.stdout) == (
        0, "host [unikernel: alice:bob:b1]: success: destroyed unikernel\n")  # fmt: skip

    listed = run(["remote", "list"])
    assert [line.split(", expires ")[0] for line in listed.stdout.splitlines()] == [
        f"alice: {endpoint} (server name 127.0.0.1)",
        f"bob: {endpoint} (server name 127.0.0.1)",
    ]


def test_block_device_round_trip(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    data = CASES / "033-block-set" / "data-64k.bin"
    made = run(["create-block", "disk1", "1", "--data", str(data), *root_args(stack)])
    assert made.exit_code == 0, made.output
    assert made.stdout == (
        "host [unikernel: :disk1]: success: added block device\n"
        "host [unikernel: :disk1]: success: set block device\n"
    )
    dumped = run(["dump-block", "disk1", *root_args(stack)])
    assert dumped.exit_code == 0, dumped.output
    first, second = dumped.stdout.splitlines()
    assert first == "host [unikernel: :disk1]: block device compressed true"
    content = Path(second.removeprefix("dumped to ")).read_bytes()
    assert content[: len(data.read_bytes())] == data.read_bytes()
    assert len(content) == 1 << 20

    listed = run(["block", *root_args(stack)])
    assert (
        listed.stdout == "host [unikernel: :]: block [unikernel: :disk1] size 1 MB active false\n"
    )
    removed = run(["destroy-block", "disk1", *root_args(stack)])
    assert removed.stdout == "host [unikernel: :disk1]: success: removed block\n"


def test_get_and_local_mode(stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    created = run(["create", "t1", str(TICKER), "--tmpdir", str(stack.tmpdir)])
    assert (created.exit_code, created.stdout) == (
        0, "host [unikernel: :t1]: success: created unikernel\n")  # fmt: skip
    got = run(["get", "t1", *root_args(stack)])
    assert got.exit_code == 0, got.output
    written = Path(got.stdout.splitlines()[1].removeprefix("dumped image to "))
    assert written.read_bytes() == TICKER.read_bytes()
    local_info = run(["info", "--json", "--tmpdir", str(stack.tmpdir)])
    assert local_info.exit_code == 0
    assert '"name": ":t1"' in local_info.stdout or '":t1"' in local_info.stdout
    destroyed = run(["destroy", "t1", "--tmpdir", str(stack.tmpdir)])
    assert destroyed.stdout == "host [unikernel: :t1]: success: destroyed unikernel\n"


def test_large_uncompressed_image_and_other_key_type(stack: Stack, tmp_path: Path) -> None:
    """A 400 KB leaf (image embedded raw) passes our endpoint; a P-384 leaf key works."""
    import subprocess
    import sys

    from tests.vectors import MKFAKE

    image = tmp_path / "big.hvt"
    subprocess.run([sys.executable, str(MKFAKE), str(image), "--size", "400000"], check=True,
                   timeout=60)  # fmt: skip
    created = run(["create", "big", str(image), "--compression-level", "0",
                   "--key-type", "p384", *root_args(stack)])  # fmt: skip
    assert (created.exit_code, created.stdout) == (
        0, "host [unikernel: :big]: success: created unikernel\n")  # fmt: skip
    assert run(["destroy", "big", *root_args(stack)]).exit_code == 0


def test_local_policy_commands(stack: Stack) -> None:
    local = ["--tmpdir", str(stack.tmpdir)]
    added = run(["add-policy", "carol", "1", "--mem", "64", "--bridge", "service", *local])
    assert (added.exit_code, added.stdout) == (
        0, "host [unikernel: carol:]: success: added policy\n")  # fmt: skip
    shown = run(["policy", "--path", "carol", *local])
    assert shown.stdout == (
        "host [unikernel: carol:]: [unikernel: :]: policy: 1 unikernels 0 CPUids 64 MB "
        "memory no block, bridges: service\n"
    )
    removed = run(["remove-policy", "--path", "carol", *local])
    assert (removed.exit_code, removed.stdout) == (
        0, "host [unikernel: carol:]: success: removed policy\n")  # fmt: skip
