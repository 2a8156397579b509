"""Endpoint benchmark: commands/s and latency, CPU per command, memory per subscriber, upload.

Run: ``.venv/bin/python bench/bench_endpoint.py`` (``--quick`` for a short pass,
``--workers N`` to give the endpoint N processes). It makes a CA and leaves in a
temporary directory, starts the daemon stand-in and our endpoint on 127.0.0.1,
drives them with ``bench/loadgen.py`` from separate processes, and prints the
Markdown tables the README shows. ``--target HOST:PORT --server-ca ... --ca ...
--ca-key ...`` measures another albatross-compatible endpoint instead (for
example the OCaml one) with the same load.
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


def loadgen(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(HERE / "loadgen.py"), *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


class Setup:
    """The CA, the stand-in and the endpoint under test."""

    def __init__(self, work: Path, workers: int, sink: bool = False, security: bool = True) -> None:
        self.work = work
        self.port = free_port()
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
        run = work / "run"
        daemon = (
            [sys.executable, str(HERE / "sinkd.py"), str(run)]
            if sink
            else [
                str(BIN / "albatross-standin"),
                "--tmpdir",
                str(run),
                "--state-dir",
                str(work / "state"),
                "--max-subscribers",
                "2000",
                "-q",
            ]
        )
        self.procs.append(
            subprocess.Popen(
                daemon, stdout=subprocess.DEVNULL, stderr=(work / "standin.log").open("wb")
            )
        )
        deadline = time.monotonic() + 20
        while not (run / "util" / "vmmd.sock").exists():  # --tmpdir must exist at start
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit("bench: the stand-in did not start; see standin.log")
            time.sleep(0.05)
        extra = ["--workers", str(workers)] if workers > 1 else []
        extra += ["--state-dir", str(work / "security")] if security else ["--no-security"]
        self.endpoint = subprocess.Popen(
            [
                str(BIN / "albatross-tls-endpoint"),
                "--ip",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--tmpdir",
                str(run),
                "--max-connections",
                "4096",
                "--backlog",
                "4096",
                "-q",
                *extra,
                str(work / "cacert.pem"),
                str(work / "server.pem"),
                str(work / "server.key"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=(work / "endpoint.log").open("wb"),
        )
        self.procs.append(self.endpoint)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            self.stop()
            raise SystemExit("bench: the endpoint did not start; see endpoint.log")

    def leaf(self, name: str, cn: str, command: Any, key_type: str = "ed25519") -> list[str]:
        chain, key = write_leaf(self.work, name, self.ca_cert, self.ca_key, cn, command, key_type)
        return [
            "--target",
            f"127.0.0.1:{self.port}",
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument(
        "--no-security", action="store_true", help="run the endpoint with --no-security"
    )
    a = ap.parse_args()
    duration = "2" if a.quick else "8"
    with tempfile.TemporaryDirectory(prefix="albabench") as tmp:
        setup = Setup(Path(tmp), a.workers, security=not a.no_security)
        pid = str(setup.endpoint.pid)
        try:
            rows = []
            for key_type in ("ed25519", "p256"):
                args = setup.leaf(f"info-{key_type}", ".", UnikernelInfo(), key_type)
                for conc in (1, 4, 16, 64) if key_type == "ed25519" else (16,):
                    r = loadgen(
                        "rate",
                        *args,
                        "--concurrency",
                        str(conc),
                        "--duration",
                        duration,
                        "--procs",
                        "2" if conc > 1 else "1",
                        "--server-pid",
                        pid,
                    )
                    rows.append((key_type, r))
            # A unikernel to subscribe to, created through the endpoint.
            image = make_image(banner="bench")
            create = UnikernelCreate(UnikernelConfig(image=image, memory=32))
            loadgen("upload", *setup.leaf("create-idle", "idle", create))
            sub = setup.leaf("console", "idle", ConsoleSubscribe(count=1))
            idle = loadgen("idle", *sub, "--server-pid", pid, "--counts", "100,500")
            # An 8 MiB image (incompressible padding) embedded uncompressed in the leaf.
            big = make_image(banner="big") + os.urandom(8 << 20)
            up_args = setup.leaf(
                "create-big",
                "big",
                UnikernelCreate(UnikernelConfig(image=big, memory=32, compressed=False)),
            )
            upload = loadgen("upload", *up_args, "--server-pid", pid)
        finally:
            setup.stop()
        # The same upload into a vmmd that takes no time: what the endpoint sustains.
        (Path(tmp) / "sink").mkdir()
        sink = Setup(Path(tmp) / "sink", a.workers, sink=True, security=not a.no_security)
        try:
            sunk = loadgen(
                "upload",
                *sink.leaf(
                    "create-big",
                    "big",
                    UnikernelCreate(UnikernelConfig(image=big, memory=32, compressed=False)),
                ),
                "--server-pid",
                str(sink.endpoint.pid),
            )
        finally:
            sink.stop()
    print(
        f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, {ssl.OPENSSL_VERSION}, endpoint workers "
        f"{a.workers}, security {'off' if a.no_security else 'on'}\n"
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
        f"failed {idle['failed']}; marginal {idle['marginal_kib_per_connection']} KiB "
        "per held connection (100 -> 500)"
    )
    for what, r in (("the stand-in", upload), ("a sink vmmd (no daemon work)", sunk)):
        print(
            f"Upload: create with an {len(big) >> 20} MiB image in the leaf, to {what}: "
            f"ok={r['ok']}, {r['seconds']} s, {r['mib_per_s']} MiB/s of certificate; endpoint "
            f"CPU {r.get('server_cpu_s', 'n/a')} s"
        )


if __name__ == "__main__":
    main()
