"""Endpoint benchmark: our albatross-tls-endpoint in front of the daemon stand-in, on loopback.

Run: ``.venv/bin/python bench/bench_endpoint.py`` (``--quick`` for a short pass).

It makes a CA, a server certificate and client leaves in a temporary directory,
starts ``albatross-standin`` and ``albatross-tls-endpoint`` as processes, and
drives them with ``bench/loadgen.py``:

* ``info`` commands per second at concurrency 1, 4, 16 and 64, with p50/p99
  latency and the endpoint's CPU time per command (one TLS 1.3 handshake, the
  chain check, one vmmd round trip and the reply each);
* the endpoint's memory per idle console subscriber (100 and 500 held
  connections; RSS growth divided by the connections added);
* one ``create`` whose leaf certificate embeds an 8 MiB image.

Prints a Markdown table (and the raw JSON with ``--json``).  Numbers depend on
the machine; the stand-in runs in the same box and takes part of the CPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from ca import profiles
from tlsendpoint.wire import ConsoleSubscribe, UnikernelConfig, UnikernelCreate, UnikernelInfo

BIN = Path(sys.executable).parent
LOADGEN = Path(__file__).with_name("loadgen.py")
MKFAKE = Path(__file__).resolve().parents[2] / "shared" / "tools" / "mkfake.py"


def _pem(path: Path, *items: Any) -> Path:
    data = b""
    for item in items:
        if hasattr(item, "private_bytes"):
            data += item.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        else:
            data += item.public_bytes(serialization.Encoding.PEM)
    path.write_bytes(data)
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait(predicate: Any, what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _loadgen(mode: str, target: str, ca: Path, chain: Path, key: Path, *extra: str) -> Any:
    out = subprocess.run(
        [
            sys.executable,
            str(LOADGEN),
            mode,
            "--target",
            target,
            "--server-ca",
            str(ca),
            "--chain",
            str(chain),
            "--key",
            str(key),
            *extra,
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return json.loads(out.stdout)


def _leaf(work: Path, name: str, ca: Any, ca_key: Any, command: Any) -> tuple[Path, Path]:
    now = dt.datetime.now(dt.UTC)
    key = profiles.generate_key()
    cert = profiles.leaf(ca, ca_key, key.public_key(), name, command, now, seconds=3600)
    return _pem(work / f"{name}.pem", cert), _pem(work / f"{name}.key", key)


def run(work: Path, quick: bool) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    root_key = profiles.generate_key()
    root = profiles.root_ca(root_key, "bench-ca", now)
    server_key = profiles.generate_key()
    server = profiles.server_cert(root, root_key, server_key.public_key(), "server", now)
    ca_file = _pem(work / "cacert.pem", root)
    cert_file, key_file = _pem(work / "server.pem", server), _pem(work / "server.key", server_key)
    info = _leaf(work, "info", root, root_key, UnikernelInfo())
    console = _leaf(work, "tick", root, root_key, ConsoleSubscribe(count=1))
    image = work / "big.hvt"
    subprocess.run(
        [sys.executable, str(MKFAKE), "--size", str(8 * 1024 * 1024 + 8192), str(image)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    big = _leaf(work, "big", root, root_key, UnikernelCreate(UnikernelConfig(image.read_bytes())))
    (work / "run").mkdir()
    (work / "state").mkdir()
    port = _free_port()
    target = f"127.0.0.1:{port}"
    standin = subprocess.Popen(
        [
            str(BIN / "albatross-standin"),
            "--tmpdir",
            str(work / "run"),
            "--state-dir",
            str(work / "state"),
            "--max-subscribers",
            "1000",
            "--memory",
            "65536",
            "-q",
        ],
        stderr=subprocess.DEVNULL,
    )
    endpoint: subprocess.Popen[bytes] | None = None
    try:
        _wait(lambda: (work / "run" / "util" / "vmmd.sock").exists(), "the stand-in")
        endpoint = subprocess.Popen(
            [
                str(BIN / "albatross-tls-endpoint"),
                "--ip",
                "127.0.0.1",
                "--port",
                str(port),
                "--tmpdir",
                str(work / "run"),
                "--max-connections",
                "2048",
                "--backlog",
                "1024",
                str(ca_file),
                str(cert_file),
                str(key_file),
            ],
            stderr=subprocess.DEVNULL,  # it logs one line per connection; that cost is included
        )
        _wait(lambda: _port_open(port), "the endpoint")
        pid = str(endpoint.pid)
        duration = "2" if quick else "5"
        results: dict[str, Any] = {"rate": []}
        for concurrency in (1, 4, 16, 64):
            results["rate"].append(
                _loadgen(
                    "rate",
                    target,
                    ca_file,
                    *info,
                    "--concurrency",
                    str(concurrency),
                    "--duration",
                    duration,
                    "--procs",
                    str(min(concurrency, 4)),
                    "--server-pid",
                    pid,
                )
            )
        results["idle"] = _loadgen(
            "idle",
            target,
            ca_file,
            *console,
            "--counts",
            "100,500",
            "--server-pid",
            pid,
            "--settle",
            "1",
        )
        results["upload"] = _loadgen("upload", target, ca_file, *big)
        return results
    finally:
        for process in (endpoint, standin):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()


def table(results: dict[str, Any]) -> str:
    lines = [
        "| concurrency | info/s | p50 ms | p99 ms | endpoint CPU ms/command | errors |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["rate"]:
        lines.append(
            f"| {r['concurrency']} | {r['commands_per_s']} | {r['p50_ms']} | {r['p99_ms']} "
            f"| {r.get('server_cpu_ms_per_command', '-')} | {r['errors']} |"
        )
    idle = results["idle"]
    rss = {int(k): v for k, v in idle["rss_kib"].items()}
    lines += [
        "",
        "| idle console subscribers | endpoint RSS (KiB) |",
        "|---:|---:|",
        *(f"| {count} | {rss[count]} |" for count in sorted(rss)),
        "",
        f"Memory per held subscriber (100 -> 500): {idle['marginal_kib_per_connection']} KiB"
        f" ({idle['opened']} opened, {idle['failed']} failed).",
        f"create with an 8 MiB image in the certificate: {results['upload']['seconds']} s,"
        f" ok={results['upload']['ok']}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-endpoint-", dir="/tmp") as tmp:
        results = run(Path(tmp), args.quick)
    if args.json:
        print(json.dumps(results, indent=1))
    print(table(results))
    print(f"\n(cpus: {os.cpu_count()}, python {sys.version.split()[0]})")


if __name__ == "__main__":
    main()
