"""End to end, the remote commands test_e2e.py does not run: restart, console, stats,
inactive-consoles, set-block, policy and certificate, each through our TLS endpoint to
the daemon stand-in, with albatross-client's output lines and exit codes."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.client.stack import Stack
from tests.client.test_e2e import TICKER, root_args, run
from tests.client.test_update import NEW
from tests.interrupt import interruptible

ALBA = Path(sys.executable).parent / "alba"


def test_restart_keeping_and_replacing_arguments(stack: Stack) -> None:
    assert run(["create", "r1", str(TICKER), "--arg", "a", *root_args(stack)]).exit_code == 0
    kept = run(["restart", "r1", *root_args(stack)])
    assert (kept.exit_code, kept.stdout) == (
        0,
        "host [unikernel: :r1]: success: created unikernel\n",
    )
    replaced = run(["restart", "r1", "--replace-arguments", "--mem", "48", "--arg", "b",
                    *root_args(stack)])  # fmt: skip
    assert (replaced.exit_code, replaced.stdout) == (
        0,
        "host [unikernel: :r1]: success: created unikernel\n",
    )
    info = run(["info", "--json", "-n", "r1", *root_args(stack)])
    (record,) = json.loads(info.stdout)["reply"]["unikernels"]
    assert (record["name"], record["memory"]) == (":r1", 48)
    missing = run(["restart", "ghost", *root_args(stack)])
    assert (missing.exit_code, missing.stdout) == (
        117,
        "albatross-client: [WARNING] host [unikernel: :ghost]: command failed destroy: not found\n",
    )


def test_inactive_consoles_set_block_and_policy(stack: Stack, tmp_path: Path) -> None:
    assert run(["create", "h1", str(TICKER), "--arg", "1", *root_args(stack)]).exit_code == 0
    deadline = time.monotonic() + 10  # "ticker 1" ticks once and exits
    listed = run(["inactive-consoles", *root_args(stack)])
    while "[unikernel: :h1]" not in listed.stdout and time.monotonic() < deadline:
        time.sleep(0.2)
        listed = run(["inactive-consoles", *root_args(stack)])
    assert (listed.exit_code, listed.stdout) == (0, "host [unikernel: :]: [unikernel: :h1]\n")

    assert run(["create-block", "d1", "1", *root_args(stack)]).exit_code == 0
    data = tmp_path / "data.bin"
    data.write_bytes(bytes(range(256)) * 256)
    written = run(["set-block", "d1", str(data), *root_args(stack)])
    assert (written.exit_code, written.stdout) == (
        0,
        "host [unikernel: :d1]: success: set block device\n",
    )

    policy = run(["policy", "--path", "alice", *root_args(stack)])
    assert policy.exit_code == 0
    assert policy.stdout.startswith("host [unikernel: :alice]: [unikernel: :]: policy: ")
    assert "unikernels 0,1 CPUids 4096 MB memory 10000 MB block, bridges: service" in policy.stdout


def test_certificate_runs_a_presigned_leaf(stack: Stack) -> None:
    made = run(["create", "viacsr", str(TICKER), "--mem", "16", "--arg", "x", "--csr"])
    assert made.exit_code == 0, made.output
    signed = run(["sign", "cacert.pem", "db", "ca.key", "viacsr.req"])
    assert signed.exit_code == 0, signed.output
    done = run(["certificate", "viacsr.pem", "viacsr.key", "--server-ca", "cacert.pem",
                "--destination", f"127.0.0.1:{stack.port}"])  # fmt: skip
    assert (done.exit_code, done.stdout) == (
        0,
        "host [unikernel: :viacsr]: success: created unikernel\n",
    )


def test_update_from_builder_web(stack: Stack, builder: str) -> None:
    # tick1 runs the image builder-web knows as an old build; update fetches the latest
    # and force-creates it, through the endpoint, keeping memory and arguments.
    created = run(["create", "tick1", str(TICKER), "--mem", "16", "--arg", "--x=1",
                   *root_args(stack)])  # fmt: skip
    assert created.exit_code == 0, created.output
    updated = run(["update", "tick1", "--http-host", builder, *root_args(stack)])
    assert (updated.exit_code, updated.stdout) == (
        0,
        f"compare at {builder}/compare/uuid-old/uuid-new\n"
        "host [unikernel: :tick1]: success: created unikernel\n",
    )
    info = run(["info", "--json", "-n", "tick1", *root_args(stack)])
    assert hashlib.sha256(NEW.read_bytes()).hexdigest() in info.stdout
    (record,) = json.loads(info.stdout)["reply"]["unikernels"]
    assert (record["name"], record["memory"]) == (":tick1", 16)


def _follow(stack: Stack, args: list[str], until: bytes) -> tuple[int, str, str]:
    """Run a following command as a process, press Ctrl-C once *until* was printed."""
    proc = subprocess.Popen(interruptible([str(ALBA), *args, *root_args(stack)]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    lines: list[bytes] = []
    seen = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if until in line:
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not seen.wait(30):
            proc.kill()
            assert proc.stderr is not None
            raise AssertionError((b"".join(lines), proc.stderr.read()))
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        reader.join(5)
        assert proc.stderr is not None
        return proc.returncode, b"".join(lines).decode(), proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_console_and_stats_follow_until_ctrl_c(stack: Stack) -> None:
    assert run(["create", "c1", str(TICKER), *root_args(stack)]).exit_code == 0
    code, out, err = _follow(stack, ["console", "c1"], b": tick 2")
    assert code == 0
    assert out.startswith("host [unikernel: :c1]: success: subscribed\n")
    assert "console " in out and ": command line: --name=c1\n" in out
    assert err.endswith("interrupted, stopped following\n")
    code, out, err = _follow(stack, ["stats", "--name", "c1"], b"success: subscribed")
    assert code == 0
    assert out.startswith("host [unikernel: :c1]: success: subscribed\n")
