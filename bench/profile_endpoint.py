"""Where the endpoint's CPU goes per ``info`` command.

Run: ``.venv/bin/python bench/profile_endpoint.py [--seconds 4] [--concurrency 4] [--top 30]``.

It starts the daemon stand-in as a child process and our :class:`Endpoint` *in
this process*, drives it with ``bench/loadgen.py rate`` (child processes), and
reports for the same load twice: first without a profiler (the endpoint
process's own CPU time per command: user+sys of this process while the load
ran), then under cProfile, printing the functions with the most own time per
command in microseconds and the time inside the OpenSSL handshake call
(``SSLObject.do_handshake``), which is the floor the rest is compared with.
``--floor`` also measures the same TLS context serving nothing but handshake, one reply
frame and close_notify, through our stream and through ``trio.SSLStream``.
The profiler counts this thread's CPU time (not wall time: the load
generator and the stand-in share the cores) and inflates the Python parts
(roughly 2x); the unprofiled figure is the one to quote.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import logging
import os
import pstats
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from bench.bench_endpoint import BIN, HERE, free_port, write_leaf
from ca import profiles
from core.wire import (
    Header,
    Message,
    Name,
    UnikernelInfo,
    UnikernelInfoList,
    encode_message,
    frame,
)
from tlsendpoint import server
from tlsendpoint.connlog import configure_logging
from tlsendpoint.limits import Limits
from tlsendpoint.security.setup import open_security
from tlsendpoint.server import Endpoint
from tlsendpoint.tlscontext import load_server_context
from tlsendpoint.tlsstream import TLSStream
from transport.unix import UnixStream


def _pki(work: Path, key_type: str) -> list[str]:
    now = dt.datetime.now(dt.UTC)
    ca_key = profiles.generate_key("ed25519")
    ca_cert = profiles.root_ca(ca_key, "ca", now)
    server_key = profiles.generate_key("ed25519")
    server = profiles.server_cert(
        ca_cert, ca_key, server_key.public_key(), "server", now, ips=["127.0.0.1"]
    )
    (work / "cacert.pem").write_bytes(ca_cert.public_bytes(Encoding.PEM))
    (work / "server.pem").write_bytes(server.public_bytes(Encoding.PEM))
    (work / "server.key").write_bytes(
        server_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    chain, key = write_leaf(work, "info", ca_cert, ca_key, ".", UnikernelInfo(), key_type)
    return ["--server-ca", str(work / "cacert.pem"), "--chain", str(chain), "--key", str(key)]


class Floor:
    """The floor: TLS handshake, one fixed reply frame, close_notify - nothing else.

    ``lean``: through the endpoint's own stream on the raw socket (what the endpoint
    does); otherwise through ``trio.SSLStream`` on ``trio.SocketStream`` (what it did).
    """

    def __init__(self, endpoint: Endpoint, lean: bool) -> None:
        self.context = endpoint.ssl_context
        self.lean = lean
        reply = Message(Header(Name((), None), 0), UnikernelInfoList(()))
        self.reply = frame(encode_message(reply))

    async def handle(self, transport: trio.SocketStream) -> None:
        tls: trio.abc.Stream
        if self.lean:
            raw = transport.socket
            sock = socket.socket(raw.family, raw.type, raw.proto, fileno=raw.detach())
            tls = TLSStream(UnixStream(sock), self.context)
        else:
            tls = trio.SSLStream(transport, self.context, server_side=True)
        try:
            await tls.do_handshake()
            await tls.send_all(self.reply)
            await tls.aclose()
        except trio.BrokenResourceError:
            await trio.aclose_forcefully(tls)


async def _serve_while(
    endpoint: Endpoint, sock: socket.socket, command: list[str], floor: str | None
) -> str:
    """Serve on *sock* while the load generator *command* runs; return its stdout."""
    shutdown = trio.Event()
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
    async with trio.open_nursery() as nursery:
        if floor is not None:
            handler = Floor(endpoint, lean=floor == "lean").handle
            nursery.start_soon(trio.serve_listeners, handler, [listener])
        else:
            await nursery.start(endpoint.serve, [listener], shutdown)
        result = await trio.run_process(command, capture_stdout=True, capture_stderr=True)
        shutdown.set()
        nursery.cancel_scope.cancel()
    return result.stdout.decode()


def _run(
    endpoint: Endpoint,
    port: int,
    args: list[str],
    profiler: cProfile.Profile | None,
    floor: str | None = None,
) -> tuple[dict[str, object], tuple[float, float]]:
    sock = socket.create_server(("127.0.0.1", port), backlog=1024)
    before = os.times()
    if profiler:
        profiler.enable()
    command = [sys.executable, str(HERE / "loadgen.py"), *args]
    out = trio.run(_serve_while, endpoint, sock, command, floor)
    if profiler:
        profiler.disable()
    after = os.times()
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result, (after.user - before.user, after.system - before.system)


def _report(
    profiler: cProfile.Profile, commands: int, top: int, by_cumulative: bool = False
) -> None:
    stats = pstats.Stats(profiler)
    raw = stats.stats  # type: ignore[attr-defined]
    rows = []
    total = 0.0
    handshake = 0.0
    for (filename, line, func), (_cc, calls, tottime, cumtime, _callers) in raw.items():
        total += tottime
        if "do_handshake" in func and filename == "~":
            handshake += tottime
        where = (
            f"{Path(filename).parent.name}/{Path(filename).name}:{line}" if filename != "~" else "C"
        )
        rows.append((tottime, cumtime, calls, f"{where} {func}"))
    rows.sort(reverse=True)
    if by_cumulative:
        rows = sorted(
            (row for row in rows if "/work/" in row[3] or not row[3].startswith(("C ", "<"))),
            key=lambda row: row[1],
            reverse=True,
        )
    per = 1e6 / commands
    print(f"\nProfiled: {commands} commands, {total * per:.0f} us profiled time per command")
    print(f"  inside OpenSSL's do_handshake (C): {handshake * per:.0f} us per command")
    print(f"  everything else: {(total - handshake) * per:.0f} us per command\n")
    print("| own us/cmd | cum us/cmd | calls/cmd | function |")
    print("|---:|---:|---:|---|")
    for tottime, cumtime, calls, name in rows[:top]:
        print(f"| {tottime * per:.1f} | {cumtime * per:.1f} | {calls / commands:.1f} | {name} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--key-type", default="ed25519", choices=["ed25519", "p256"])
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--no-profile", action="store_true", help="only the unprofiled figure")
    ap.add_argument("--cumulative", action="store_true", help="sort by cumulative time")
    ap.add_argument(
        "--no-daemon",
        action="store_true",
        help="ablation: answer every authorised request without the daemon exchange",
    )
    ap.add_argument(
        "--floor",
        action="store_true",
        help="also measure the floor: the same TLS context serving only handshake + one frame",
    )
    ap.add_argument(
        "--defaults",
        action="store_true",
        help="the endpoint's default options: security on, one log line per command to "
        "stderr (redirect it: 2>/dev/null)",
    )
    a = ap.parse_args()
    if a.defaults:
        configure_logging("stderr", logging.INFO)
    else:
        configure_logging("none", logging.ERROR)  # -q, --no-security
    if a.no_daemon:

        async def no_daemon(*_args: object, **_kwargs: object) -> UnikernelInfoList:
            await trio.lowlevel.checkpoint()
            return UnikernelInfoList(())

        setattr(server, "serve_request", no_daemon)  # noqa: B010 - an ablation, bench only
    with tempfile.TemporaryDirectory(prefix="albaprof") as tmp:
        work = Path(tmp)
        leaf_args = _pki(work, a.key_type)
        run = work / "run"
        standin = subprocess.Popen(
            [
                str(BIN / "albatross-standin"),
                "--tmpdir",
                str(run),
                "--state-dir",
                str(work / "state"),
                "-q",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 20
            while not (run / "util" / "vmmd.sock").exists():
                if time.monotonic() > deadline:
                    raise SystemExit("profile: the stand-in did not start")
                time.sleep(0.05)
            context = load_server_context(
                work / "cacert.pem", work / "server.pem", work / "server.key"
            )
            security = (
                open_security(
                    work / "cacert.pem", state_dir=work / "security", crl_dir=None,
                    audit_log=None, audit_fsync=False, no_security=False,
                )
                if a.defaults
                else None
            )  # fmt: skip
            endpoint = Endpoint(context, run / "util", Limits(), security=security)

            def args(port: int) -> list[str]:
                return [
                    "rate", "--target", f"127.0.0.1:{port}", *leaf_args,
                    "--concurrency", str(a.concurrency), "--duration", str(a.seconds),
                    "--procs", "2" if a.concurrency > 1 else "1",
                ]  # fmt: skip

            port = free_port()
            result, (user, system) = _run(endpoint, port, args(port), None)
            commands = max(1, int(str(result["commands"])) + int(str(result["errors"])))
            print(
                f"Unprofiled: {commands} commands ({result['errors']} errors) in "
                f"{result['duration_s']} s, {result['commands_per_s']}/s; endpoint CPU "
                f"{(user + system) * 1000 / commands:.3f} ms per command (user "
                f"{user * 1000 / commands:.3f}, sys {system * 1000 / commands:.3f})"
            )
            for kind in ("lean", "trio") if a.floor else ():
                port = free_port()
                result, (user, system) = _run(endpoint, port, args(port), None, floor=kind)
                commands = max(1, int(str(result["commands"])) + int(str(result["errors"])))
                stream = "our TLSStream" if kind == "lean" else "trio.SSLStream"
                print(
                    f"Floor (handshake, one reply frame, close_notify; {stream}): "
                    f"{commands} connections, {(user + system) * 1000 / commands:.3f} ms CPU per "
                    f"connection (user {user * 1000 / commands:.3f}, sys "
                    f"{system * 1000 / commands:.3f})"
                )
            if not a.no_profile:
                # CPU time, not wall time: the load generator shares the cores
                profiler = cProfile.Profile(time.thread_time)
                port = free_port()
                result, _cpu = _run(endpoint, port, args(port), profiler)
                commands = int(str(result["commands"])) + int(str(result["errors"]))
                _report(profiler, max(commands, 1), a.top, a.cumulative)
        finally:
            standin.send_signal(signal.SIGTERM)
            standin.wait(timeout=15)


if __name__ == "__main__":
    main()
