"""The README's demo: a CA, the daemon stand-in and the endpoint on localhost, driven by alba.

Run it with ``scripts/demo`` (``--keep`` leaves the services running and says what to try next;
``--workdir DIR`` chooses where the files go, default ``./demo-work``, wiped first).
Every step prints the command it runs and that command's output, as a user would see it;
colours only on a terminal (and never with ``NO_COLOR`` set).  SIGTERM or Ctrl-C, during the
story or while ``--keep`` waits, stops the endpoint and the daemon stand-in too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from standin.images import make_image

BIN = Path(sys.executable).parent
STARTUP_TIMEOUT = 20.0
COMMAND_TIMEOUT = 60.0
# A process started with SIGINT ignored (nohup, a background job of a script) passes that
# on, and Python then never raises KeyboardInterrupt; this shim restores it and execs.
RESTORE_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def _styles() -> dict[str, str]:
    """ANSI styles for a terminal; nothing when the output goes to a pipe or a file."""
    if not sys.stdout.isatty() or os.environ.get("NO_COLOR"):
        return {"bold": "", "cyan": "", "dim": "", "off": ""}
    return {"bold": "\033[1m", "cyan": "\033[36m", "dim": "\033[2m", "off": "\033[0m"}


STYLE = _styles()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Demo:
    def __init__(self, work: Path, port: int) -> None:
        self.work = work
        self.port = port
        self.dest = f"127.0.0.1:{port}"
        self.env = dict(os.environ, ALBATROSS_REMOTES=str(work / "friend" / "remotes.toml"))
        self.services: list[subprocess.Popen[bytes]] = []

    # -- output -------------------------------------------------------------

    def section(self, title: str) -> None:
        print(f"\n{STYLE['bold']}== {title}{STYLE['off']}", flush=True)

    def run(
        self,
        *args: str,
        cwd: Path | None = None,
        expect: int = 0,
        interrupt_after: float | None = None,
    ) -> str:
        """Run an ``alba`` command as a user would, show it and its output, check its status."""
        cwd = cwd or self.work
        shown = " ".join(args)
        print(f"{STYLE['cyan']}{cwd.name}$ {shown}{STYLE['off']}", flush=True)
        argv = [str(BIN / args[0]), *args[1:]]
        if interrupt_after is not None:
            # Whatever we inherited, the follow must see our Ctrl-C: restore SIGINT, then exec.
            argv = [sys.executable, "-c", RESTORE_SIGINT, *argv]
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            if interrupt_after is None:
                out, _ = proc.communicate(timeout=COMMAND_TIMEOUT)
            else:
                out = self._follow_then_interrupt(proc, interrupt_after)
        except subprocess.TimeoutExpired:
            raise SystemExit(f"demo: `{shown}` did not finish in time") from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        text = out.decode(errors="replace")
        print(text, end="" if text.endswith("\n") or not text else "\n")
        if proc.returncode != expect:
            raise SystemExit(f"demo: `{shown}` exited {proc.returncode}, expected {expect}")
        if expect:
            print(f"{STYLE['dim']}(exit status {proc.returncode}, as expected){STYLE['off']}")
        return text

    @staticmethod
    def _follow_then_interrupt(proc: subprocess.Popen[bytes], seconds: float) -> bytes:
        """Once the stream is being followed, let it run *seconds*, then press Ctrl-C."""
        assert proc.stdout is not None
        lines: list[bytes] = []
        following = threading.Event()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if b"success: subscribed" in line:
                    following.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        if following.wait(COMMAND_TIMEOUT):
            time.sleep(seconds)
        proc.send_signal(signal.SIGINT)  # like Ctrl-C on a console follow
        proc.wait(timeout=COMMAND_TIMEOUT)
        reader.join(timeout=5)
        return b"".join(lines)

    # -- services -----------------------------------------------------------

    def start(self, *args: str, log: str) -> None:
        logfile = (self.work / log).open("wb")
        self.services.append(
            subprocess.Popen(
                [str(BIN / args[0]), *args[1:]],
                cwd=self.work,
                stdout=logfile,
                stderr=subprocess.STDOUT,
            )
        )

    def wait_for(self, check: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.services):
                raise SystemExit(
                    f"demo: a service exited while waiting for {what}; see {self.work}/*.log"
                )
            if check():
                return
            time.sleep(0.1)
        raise SystemExit(f"demo: {what} did not come up within {STARTUP_TIMEOUT} s")

    def endpoint_listening(self) -> bool:
        """The endpoint's own "listening on" line: a probe connection would be a connection
        like any other, and would open the audit log with an error record."""
        try:
            return b"listening on" in (self.work / "endpoint.log").read_bytes()
        except FileNotFoundError:
            return False

    def stop(self) -> None:
        for proc in reversed(self.services):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.services:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def story(d: Demo) -> None:
    work, run = d.work, d.run
    remote = (
        "--destination",
        d.dest,
        "--ca",
        "cacert.pem",
        "--ca-key",
        "ca.key",
        "--server-ca",
        "cacert.pem",
    )

    d.section("The operator creates a root CA and the endpoint's certificate")
    run("alba", "generate", "ca", "db", "--server-name", "localhost", "--server-ip", "127.0.0.1")

    d.section(f"The daemon stand-in and the endpoint start on {d.dest}")
    run_dir = work / "run"
    d.start(
        "albatross-standin",
        "--tmpdir",
        str(run_dir),
        "--state-dir",
        str(work / "state"),
        "--bridge",
        "service",
        log="standin.log",
    )
    d.wait_for(lambda: (run_dir / "util" / "vmmd.sock").exists(), "the daemon stand-in")
    (work / "crl").mkdir()
    # The security state, the CRL directory and the audit log live in the work directory.
    security = ["--state-dir", "endpoint-state", "--crl-dir", "crl", "--audit-log", "audit.log"]
    tls_files = ["cacert.pem", "server.pem", "server.key"]
    listen = ["--ip", "127.0.0.1", "--port", str(d.port), "--tmpdir", str(run_dir)]
    d.start("albatross-tls-endpoint", *listen, *security, *tls_files, log="endpoint.log")
    d.wait_for(d.endpoint_listening, "the endpoint")
    print(f"albatross-standin --tmpdir {run_dir} (log: standin.log)")
    print(
        " ".join(["albatross-tls-endpoint", *listen, *security, *tls_files]), "(log: endpoint.log)"
    )

    d.section("The operator asks what runs on the host")
    run("alba", "info", *remote)

    d.section("The operator delegates a quota to a friend: 1 unikernel, 64 MB, bridge service")
    run(
        "alba",
        "ca",
        "delegate",
        "friend",
        "1",
        "--mem",
        "64",
        "--bridge",
        "service",
        "--ca",
        "cacert.pem",
        "--ca-key",
        "ca.key",
        "--server-ca",
        "cacert.pem",
        "--endpoint",
        d.dest,
        "--server-name",
        "localhost",
        "--db",
        "db",
    )

    friend = work / "friend"
    friend.mkdir()
    shutil.copy(work / "friend.bundle", friend / "friend.bundle")
    (friend / "hello.hvt").write_bytes(make_image(banner="hello from the demo"))
    d.section("The friend imports the bundle (one file) and runs a unikernel")
    run("alba", "remote", "import", "friend.bundle", cwd=friend)
    run("alba", "create", "hello", "hello.hvt", "--mem", "32", "--remote", "friend", cwd=friend)
    run("alba", "info", "--remote", "friend", cwd=friend)
    run("alba", "console", "hello", "--remote", "friend", cwd=friend, interrupt_after=3.5)

    d.section("The friend tries a second unikernel: over quota, and the endpoint says why")
    run("alba", "create", "second", "hello.hvt", "--remote", "friend", cwd=friend, expect=117)

    d.section("The friend asks for more memory than delegated: refused before anything is sent")
    run(
        "alba",
        "create",
        "big",
        "hello.hvt",
        "--mem",
        "128",
        "--remote",
        "friend",
        cwd=friend,
        expect=124,
    )

    d.section("Offline, the friend can ask why; the answer is the endpoint's own reason")
    vmmd = str(run_dir / "util" / "vmmd.sock")
    explain = ("alba", "explain", "--remote", "friend", "--command", "create", "--name", "x")
    run(*explain, "--vmmd", vmmd, cwd=friend, expect=1)

    d.section("The operator sees the friend's unikernel under its path")
    run("alba", "info", *remote)

    d.section("The operator revokes the friend's delegation; the endpoint honours it at once")
    run("alba", "ca", "revoke", "--ca", "cacert.pem", "--db", "db", "--name", "friend")
    crl = ("--ca", "cacert.pem", "--ca-key", "ca.key", "--out", "crl/root.crl")
    run("alba", "ca", "crl", *crl)
    run("alba", "info", "--remote", "friend", cwd=friend, expect=117)

    d.section("Every decision is in a hash-chained audit log; a changed line would be found")
    run("albatross-audit", "verify", "audit.log")


def suggestions(d: Demo) -> list[str]:
    """What to try with --keep: the story ends with the friend revoked, so the operator's
    commands (the root CA is not revoked), each one a shell line that works as printed."""
    work = d.work
    operator = (
        f"--destination {d.dest} --ca {work}/cacert.pem --ca-key {work}/ca.key"
        f" --server-ca {work}/cacert.pem"
    )
    return [
        f"cd {work} && {BIN}/alba info {operator}",
        f"{BIN}/albatross-inspect {work}/friend/friend.bundle",
        f"{BIN}/albatross-audit verify {work}/audit.log",
    ]


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # the finally below stops the services


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workdir", type=Path, default=Path("demo-work"))
    ap.add_argument("--keep", action="store_true", help="leave the services running")
    ap.add_argument("--port", type=int, default=0, help="endpoint port (default: a free one)")
    args = ap.parse_args()
    work = args.workdir.resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    demo = Demo(work, args.port or free_port())
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        story(demo)
        if args.keep:
            demo.section("Still running; the friend is revoked now, the operator is not. Try")
            for line in suggestions(demo):
                print(f"  {line}")
            print("Press Ctrl-C (or send SIGTERM) to stop the endpoint and the daemon stand-in.")
            sys.stdout.flush()
            # sigwait takes only signals that are blocked: unblocked, SIGTERM would run the
            # handler above, and in a process without it, kill us before the finally runs
            waited = {signal.SIGINT, signal.SIGTERM}
            signal.pthread_sigmask(signal.SIG_BLOCK, waited)
            signal.sigwait(waited)
        else:
            demo.section("Done")
            print(f"Files are in {work}; `scripts/demo --keep` leaves the services running.")
    finally:
        # a second Ctrl-C or SIGTERM must not cut the stopping short
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        demo.stop()


if __name__ == "__main__":
    main()
