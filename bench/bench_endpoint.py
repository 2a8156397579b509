"""Endpoint benchmark: every figure of issue 13 in one run, with its ratio to the target.

Run: ``.venv/bin/python bench/bench_endpoint.py [--quick] [--workers N]
[--endpoint-cpus 0 --load-cpus 1]``.  It makes a CA and leaves in a temporary
directory, starts the daemon stand-in and our endpoint on 127.0.0.1 with its default
options (logging to a file, security on), drives them with ``bench/loadgen.py`` from
separate processes, and prints the Markdown tables the README shows:

* the TLS floor (``bench/floor.py``: the same TLS context serving handshake, one reply
  frame and close_notify from a blocking loop, nothing else) and the endpoint's CPU per
  ``info`` at concurrency 16, alternated (floor, endpoint, floor, endpoint) so that a
  change in the machine's load hits both;
* commands/s and p50/p90/p99 at concurrency 1, 4, 16, 64 (Ed25519) and 16 (P-256);
* the start-up of each CLI and the wall time per command of an inetd endpoint
  (``bench/startup.py``);
* memory per held console subscriber; an 8 MiB ``create`` (the stand-in and a sink vmmd).

``--endpoint-cpus`` / ``--load-cpus`` pin the endpoint (and the floor) and the rest (load
generator, stand-in, CLIs) to disjoint CPUs (``os.sched_setaffinity``), so the endpoint's
figures are per core rather than those of a saturated machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import Target
from bench.startup import cli_startup, compile_project, inetd_per_command, pinned
from ca import profiles
from core.wire import (
    ConsoleSubscribe,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelInfo,
)
from standin.images import make_image

BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def write_leaf(
    work: Path, name: str, ca_cert: Any, ca_key: Any, cn: str, command: Any, key_type: str
) -> tuple[Path, Path]:
    key = profiles.generate_key(key_type)
    now = dt.datetime.now(dt.UTC)
    cert = profiles.leaf(ca_cert, ca_key, key.public_key(), cn, command, now, seconds=3600)
    chain, key_path = work / f"{name}.pem", work / f"{name}.key"
    chain.write_bytes(cert.public_bytes(Encoding.PEM))
    key_path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return chain, key_path


#: CPUs of the load generator, the stand-in and the CLIs (None: any).
LOAD_CPUS: set[int] | None = None


def loadgen(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(HERE / "loadgen.py"), *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
        preexec_fn=pinned(LOAD_CPUS),
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


class Setup:
    """The CA, the stand-in and the endpoint under test (or the floor in its place)."""

    def __init__(
        self,
        work: Path,
        endpoint_args: list[str],
        endpoint_cpus: set[int] | None,
        sink: bool = False,
    ) -> None:
        self.work = work
        self.port = free_port()
        self.endpoint_cpus = endpoint_cpus
        self.procs: list[subprocess.Popen[bytes]] = []
        now = dt.datetime.now(dt.UTC)
        self.ca_key = profiles.generate_key("ed25519")
        self.ca_cert = profiles.root_ca(self.ca_key, "ca", now)
        server_key = profiles.generate_key("ed25519")
        server = profiles.server_cert(
            self.ca_cert, self.ca_key, server_key.public_key(), "server", now, ips=["127.0.0.1"]
        )
        (work / "cacert.pem").write_bytes(self.ca_cert.public_bytes(Encoding.PEM))
        (work / "server.pem").write_bytes(server.public_bytes(Encoding.PEM))
        (work / "server.key").write_bytes(
            server_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        )
        self.tls_files = [str(work / name) for name in ("cacert.pem", "server.pem", "server.key")]
        self.run = work / "run"
        daemon = (
            [sys.executable, str(HERE / "sinkd.py"), str(self.run)]
            if sink
            else [
                str(BIN / "albatross-standin"),
                "--tmpdir",
                str(self.run),
                "--state-dir",
                str(work / "state"),
                "--max-subscribers",
                "2000",
                "-q",
            ]
        )
        self.procs.append(
            subprocess.Popen(
                daemon,
                stdout=subprocess.DEVNULL,
                stderr=(work / "standin.log").open("wb"),
                preexec_fn=pinned(LOAD_CPUS),
            )
        )
        deadline = time.monotonic() + 20
        while not (self.run / "util" / "vmmd.sock").exists():  # --tmpdir must exist at start
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit("bench: the stand-in did not start; see standin.log")
            time.sleep(0.05)
        self.endpoint_args = ["--tmpdir", str(self.run), *endpoint_args]
        argv = [
            str(BIN / "albatross-tls-endpoint"), "--ip", "127.0.0.1", "--port", str(self.port),
            "--max-connections", "4096", "--backlog", "4096", *self.endpoint_args, *self.tls_files,
        ]  # fmt: skip
        self.endpoint = self.start(argv, self.port, "endpoint")

    def start(self, argv: list[str], port: int, what: str) -> subprocess.Popen[bytes]:
        """Start a server on the endpoint's CPUs and wait until *port* accepts."""
        process = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=(self.work / f"{what}.log").open("wb"),
            preexec_fn=pinned(self.endpoint_cpus),
        )
        self.procs.append(process)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return process
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise SystemExit(f"bench: the {what} did not start; see {what}.log")

    def floor(self) -> tuple[subprocess.Popen[bytes], int]:
        """The TLS floor (``bench/floor.py``) on the same certificates, and its port."""
        port = free_port()
        argv = [sys.executable, str(HERE / "floor.py"), str(port), *self.tls_files]
        return self.start(argv, port, "floor"), port

    def leaf(
        self, name: str, cn: str, command: Any, key_type: str = "ed25519", port: int = 0
    ) -> list[str]:
        chain, key = write_leaf(self.work, name, self.ca_cert, self.ca_key, cn, command, key_type)
        return [
            "--target",
            f"127.0.0.1:{port or self.port}",
            "--server-ca",
            str(self.work / "cacert.pem"),
            "--chain",
            str(chain),
            "--key",
            str(key),
        ]

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


def rate(args: list[str], concurrency: int, duration: str, pid: int) -> dict[str, Any]:
    return loadgen(
        "rate", *args, "--concurrency", str(concurrency), "--duration", duration,
        "--procs", "2" if concurrency > 1 else "1", "--server-pid", str(pid),
    )  # fmt: skip


def floor_and_cpu(setup: Setup, duration: str, rounds: int) -> tuple[list[float], list[float]]:
    """CPU ms per ``info`` at concurrency 16: the floor's and the endpoint's, alternated."""
    floor, floor_port = setup.floor()
    info = UnikernelInfo()
    at_floor = setup.leaf("info-floor", ".", info, port=floor_port)
    at_endpoint = setup.leaf("info-cpu", ".", info)
    floors, ours = [], []
    try:
        for _ in range(rounds):
            floors.append(rate(at_floor, 16, duration, floor.pid)["server_cpu_ms_per_command"])
            r = rate(at_endpoint, 16, duration, setup.endpoint.pid)
            ours.append(r["server_cpu_ms_per_command"])
    finally:
        floor.send_signal(signal.SIGTERM)
        floor.wait(timeout=15)
    return floors, ours


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def cpus(text: str) -> set[int] | None:
    return {int(c) for c in text.split(",")} if text else None


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    global LOAD_CPUS
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="2 s per load instead of 8")
    ap.add_argument("--workers", type=int, default=1, help="endpoint worker processes")
    ap.add_argument("--endpoint-cpus", default="", help="CPUs of the endpoint, e.g. 0")
    ap.add_argument("--load-cpus", default="", help="CPUs of everything else, e.g. 1")
    ap.add_argument(
        "--no-security", action="store_true", help="run the endpoint with --no-security"
    )
    ap.add_argument("-q", "--quiet", action="store_true", help="run the endpoint with -q")
    ap.add_argument("--inetd-commands", type=int, default=20)
    ap.add_argument("--startup-runs", type=int, default=7)
    a = ap.parse_args()
    endpoint_cpus, LOAD_CPUS = cpus(a.endpoint_cpus), cpus(a.load_cpus)
    if endpoint_cpus and LOAD_CPUS and endpoint_cpus & LOAD_CPUS:
        raise SystemExit("bench: --endpoint-cpus and --load-cpus must be disjoint")
    duration = "2" if a.quick else "8"
    compile_project()  # the bytecode an installed package has (bench/startup.py)
    started, load_before = dt.datetime.now(dt.UTC), load_average()
    with tempfile.TemporaryDirectory(prefix="albabench") as tmp:
        work = Path(tmp)
        extra = ["--workers", str(a.workers)] if a.workers > 1 else []
        security = ["--no-security"] if a.no_security else ["--state-dir", str(work / "security")]
        extra += security + (["-q"] if a.quiet else [])
        setup = Setup(work, extra, endpoint_cpus)
        pid = setup.endpoint.pid
        try:
            floors, ours = floor_and_cpu(setup, duration, 2)
            rows = []
            for key_type in ("ed25519", "p256"):
                args = setup.leaf(f"info-{key_type}", ".", UnikernelInfo(), key_type)
                for conc in (1, 4, 16, 64) if key_type == "ed25519" else (16,):
                    rows.append((key_type, rate(args, conc, duration, pid)))
            # inetd: one process per connection, the same daemons and state directory
            inetd_port = free_port()
            inetd_args = [*security, "--tmpdir", str(setup.run), "-q", *setup.tls_files]
            leaf = setup.leaf("info-inetd", ".", UnikernelInfo(), port=inetd_port)
            target = Target("127.0.0.1", inetd_port, leaf[3], leaf[5], leaf[7])
            inetd = inetd_per_command(
                inetd_port, inetd_args, target, a.inetd_commands, endpoint_cpus, work / "inetd.log"
            )
            # A unikernel to subscribe to, created through the endpoint.
            image = make_image(banner="bench")
            create = UnikernelCreate(UnikernelConfig(image=image, memory=32))
            loadgen("upload", *setup.leaf("create-idle", "idle", create))
            sub = setup.leaf("console", "idle", ConsoleSubscribe(count=1))
            idle = loadgen("idle", *sub, "--server-pid", str(pid), "--counts", "100,500")
            # An 8 MiB image (incompressible padding) embedded uncompressed in the leaf.
            big = make_image(banner="big") + os.urandom(8 << 20)
            big_create = UnikernelCreate(UnikernelConfig(image=big, memory=32, compressed=False))
            up_args = setup.leaf("create-big", "big", big_create)
            upload = loadgen("upload", *up_args, "--server-pid", str(pid))
        finally:
            setup.stop()
        # The same upload into a vmmd that takes no time: what the endpoint sustains.
        (work / "sink").mkdir()
        sink = Setup(work / "sink", extra, endpoint_cpus, sink=True)
        try:
            sunk = loadgen(
                "upload",
                *sink.leaf("create-big", "big", big_create),
                "--server-pid",
                str(sink.endpoint.pid),
            )
        finally:
            sink.stop()
    startup = cli_startup(a.startup_runs, LOAD_CPUS)
    tls_memory = subprocess.run(
        [sys.executable, str(HERE / "tls_memory_floor.py"), "--pyopenssl"],
        check=True, capture_output=True, text=True, timeout=600,
    ).stdout.strip()  # fmt: skip
    idle["tls_floor"] = tls_memory
    report(a, started, load_before, floors, ours, rows, startup, inetd, idle, (upload, sunk))


def report(
    a: argparse.Namespace,
    started: dt.datetime,
    load_before: str,
    floors: list[float],
    ours: list[float],
    rows: list[tuple[str, dict[str, Any]]],
    startup: list[tuple[str, float, int]],
    inetd: tuple[float, float, int],
    idle: dict[str, Any],
    uploads: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    print(
        f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, {ssl.OPENSSL_VERSION}; {started:%Y-%m-%d %H:%M} "
        f"UTC; load average {load_before} before, {load_average()} after; endpoint workers "
        f"{a.workers}, security {'off' if a.no_security else 'on'}, logging "
        f"{'off (-q)' if a.quiet else 'on (stderr to a file)'}; CPUs endpoint "
        f"{a.endpoint_cpus or 'any'}, load {a.load_cpus or 'any'}; our modules compiled to "
        "bytecode, as installed\n"
    )
    p99 = next(r["p99_ms"] for k, r in rows if k == "ed25519" and r["concurrency"] == 64)
    errors = sum(r["errors"] for _, r in rows)
    floor, cpu = mean(floors), mean(ours)
    subscriber = idle["marginal_kib_per_connection"]
    subscriber_floor = float(idle["tls_floor"].split(" KiB")[0].rsplit(" ", 1)[1])
    median, p90, inetd_errors = inetd
    figures = [
        (cpu / floor / 1.25, "CPU per `info` at c=16 ÷ the TLS floor",
         f"{cpu:.2f} ÷ {floor:.2f} ms = {cpu / floor:.2f}×", "≤ 1.25×"),
        *((ms / 150, f"`{label}`" + ("" if code == 0 else f" (exit {code})"),
           f"{ms:.0f} ms", "≤ 150 ms") for label, ms, code in startup),
        (median / 130, f"inetd, one `info` after another (p90 {p90:.0f} ms, {inetd_errors} "
         "errors)", f"{median:.0f} ms", "≤ 130 ms"),
        (subscriber / 16, f"memory per held console subscriber (OpenSSL's own: "
         f"{subscriber_floor} KiB)", f"{subscriber} KiB", "≤ 16 KiB"),
        (p99 / 150, f"p99 at 64 concurrent clients ({errors} errors in all loads)",
         f"{p99:.0f} ms", "≤ 150 ms"),
    ]  # fmt: skip
    print("| ratio to target | figure | measured | target |")
    print("|---:|---|---:|---:|")
    for ratio, label, measured, target in figures:
        print(f"| {ratio:.2f} | {label} | {measured} | {target} |")
    print(
        f"\nFloor runs {', '.join(f'{f:.2f}' for f in floors)} ms; endpoint runs "
        f"{', '.join(f'{c:.2f}' for c in ours)} ms CPU per command.\n"
    )
    print(
        "| leaf key | concurrency | commands/s | p50 ms | p90 ms | p99 ms | errors "
        "| endpoint CPU ms/command |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for key_type, r in rows:
        print(
            f"| {key_type} | {r['concurrency']} | {r['commands_per_s']} | {r['p50_ms']} | "
            f"{r['p90_ms']} | {r['p99_ms']} | {r['errors']} | "
            f"{r.get('server_cpu_ms_per_command', 'n/a')} |"
        )
    print()
    print(
        f"Idle console subscribers: RSS {idle['rss_kib']} KiB, opened {idle['opened']}, "
        f"failed {idle['failed']}; marginal {subscriber} KiB per held connection (100 -> 500)"
    )
    print(f"Memory floor (bench/tls_memory_floor.py):\n{idle['tls_floor']}")
    for what, r in zip(("the stand-in", "a sink vmmd (no daemon work)"), uploads, strict=True):
        print(
            f"Upload: create with an 8 MiB image in the leaf, to {what}: "
            f"ok={r['ok']}, {r['seconds']} s, {r['mib_per_s']} MiB/s of certificate; endpoint "
            f"CPU {r.get('server_cpu_s', 'n/a')} s"
        )


if __name__ == "__main__":
    main()
