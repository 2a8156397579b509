"""Load generator for any albatross-compatible TLS endpoint (ours or the OCaml one).

Three modes, each printing one JSON object on stdout (a summary goes to stderr):

* ``rate``: N concurrent clients (spread over several processes, so the generator is not
  the bottleneck) each open a connection, present the client chain, read the reply until the
  endpoint closes, and start again, for a duration. Reports commands/s, p50/p90/p99 latency,
  errors, and, with ``--server-pid``, the endpoint's CPU time per command (its process tree).
* ``idle``: open N connections that each hold a console subscription (the chain must carry a
  console-subscribe leaf) and report the endpoint's RSS growth per held connection.
* ``upload``: one ``create`` whose leaf certificate embeds an image of the given size; reports
  the certificate size, the time until the reply and the throughput (certificate octets / s).

Only loopback targets are meant: the generator refuses anything but 127.0.0.0/8 and ::1.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import multiprocessing
import os
import socket
import ssl
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ParseError
from core.wire import END, Failure, FrameDecoder, decode_message

CONNECT_TIMEOUT = 10.0


@dataclass
class Target:
    host: str
    port: int
    server_ca: str
    chain: str
    key: str

    def context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.check_hostname = False  # albatross's server certificate names no host
        ctx.load_verify_locations(self.server_ca)
        ctx.load_cert_chain(self.chain, self.key)
        return ctx


def parse_target(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"loadgen: {host} is not a loopback address; refusing to send load there")
    return host, int(port)


def one_command(ctx: ssl.SSLContext, target: Target, upload: bytes = b"") -> tuple[float, bool]:
    """Run one connection; return (seconds, ok). ok = a non-failure reply was received."""
    start = time.perf_counter()
    ok = False
    with (
        socket.create_connection((target.host, target.port), timeout=CONNECT_TIMEOUT) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        if upload:
            tls.sendall(upload)
        decoder = FrameDecoder()
        while True:
            data = tls.recv(65536)
            if not data:
                break
            decoder.feed(data)
            for item in decoder.frames():
                if item is END:
                    continue
                assert isinstance(item, bytes)
                try:
                    ok = not isinstance(decode_message(item).payload, Failure)
                except ParseError:
                    ok = False
    return time.perf_counter() - start, ok


def _rate_worker(args: tuple[Target, int, float]) -> dict[str, Any]:
    target, threads, duration = args
    ctx = target.context()
    deadline = time.monotonic() + duration
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def loop() -> None:
        nonlocal errors
        while time.monotonic() < deadline:
            try:
                seconds, ok = one_command(ctx, target)
            except OSError:
                ok, seconds = False, 0.0
            with lock:
                if ok:
                    latencies.append(seconds)
                else:
                    errors += 1

    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return {"latencies": latencies, "errors": errors}


def _tree(pid: int) -> list[int]:
    """*pid* and its descendants (the endpoint may run several worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    total = 0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    total = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_rate(
    target: Target, concurrency: int, duration: float, procs: int, server_pid: int | None
) -> dict[str, Any]:
    procs = max(1, min(procs, concurrency))
    per = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    cpu_before = cpu_seconds(server_pid) if server_pid else None
    started = time.monotonic()
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        results = pool.map(_rate_worker, [(target, n, duration) for n in per])
    elapsed = time.monotonic() - started
    latencies = [x for r in results for x in r["latencies"]]
    errors = sum(r["errors"] for r in results)
    out: dict[str, Any] = {
        "mode": "rate",
        "concurrency": concurrency,
        "duration_s": round(elapsed, 2),
        "commands": len(latencies),
        "errors": errors,
        "commands_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p90_ms": round(percentile(latencies, 0.90) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2) if latencies else None,
    }
    if server_pid and cpu_before is not None and latencies:
        cpu = cpu_seconds(server_pid) - cpu_before
        out["server_cpu_ms_per_command"] = round(cpu / (len(latencies) + errors) * 1000, 3)
    return out


@dataclass
class Holder:
    """Threads that each hold one console subscription open."""

    target: Target
    stop: threading.Event = field(default_factory=threading.Event)
    opened: int = 0
    failed: int = 0
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self, n: int, ctx: ssl.SSLContext) -> None:
        ready = threading.Semaphore(0)
        for _ in range(n):
            t = threading.Thread(target=self._hold, args=(ctx, ready), daemon=True)
            t.start()
            self.threads.append(t)
        for _ in range(n):
            ready.acquire(timeout=30)

    def _hold(self, ctx: ssl.SSLContext, ready: threading.Semaphore) -> None:
        try:
            raw = socket.create_connection((self.target.host, self.target.port), CONNECT_TIMEOUT)
            tls = ctx.wrap_socket(raw)
            tls.recv(65536)  # the "subscribed" reply
            with self.lock:
                self.opened += 1
        except OSError:
            with self.lock:
                self.failed += 1
            ready.release()
            return
        ready.release()
        tls.settimeout(0.5)
        while not self.stop.is_set():
            try:
                if not tls.recv(65536):
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        tls.close()

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=5)


def run_idle(target: Target, counts: list[int], server_pid: int, settle: float) -> dict[str, Any]:
    ctx = target.context()
    holder = Holder(target)
    samples = {0: rss_kib(server_pid)}
    try:
        held = 0
        for count in sorted(counts):
            holder.open(count - held, ctx)
            held = count
            time.sleep(settle)
            samples[count] = rss_kib(server_pid)
    finally:
        holder.close()
    lo, hi = min(counts), max(counts)
    marginal = (samples[hi] - samples[lo]) / (hi - lo) if hi > lo else None
    return {
        "mode": "idle",
        "rss_kib": samples,
        "opened": holder.opened,
        "failed": holder.failed,
        "marginal_kib_per_connection": None if marginal is None else round(marginal, 2),
    }


def run_upload(target: Target, server_pid: int | None) -> dict[str, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    ctx = target.context()
    chain = x509.load_pem_x509_certificates(Path(target.chain).read_bytes())
    size = sum(len(c.public_bytes(Encoding.DER)) for c in chain)
    cpu_before = cpu_seconds(server_pid) if server_pid else None
    seconds, ok = one_command(ctx, target)
    cpu = None if cpu_before is None else round(cpu_seconds(server_pid or 0) - cpu_before, 3)
    return {
        "mode": "upload",
        "server_cpu_s": cpu,
        "ok": ok,
        "chain_der_octets": size,
        "seconds": round(seconds, 3),
        "mib_per_s": round(size / seconds / (1 << 20), 1),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("mode", choices=["rate", "idle", "upload"])
    p.add_argument("--target", required=True, help="HOST:PORT of the endpoint (loopback only)")
    p.add_argument("--server-ca", required=True)
    p.add_argument("--chain", required=True, help="PEM: leaf first, then its CAs")
    p.add_argument("--key", required=True, help="the leaf's private key (PEM)")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--server-pid", type=int)
    p.add_argument("--counts", default="100,500", help="idle: connection counts to sample")
    p.add_argument("--settle", type=float, default=1.0)
    a = p.parse_args(argv)
    host, port = parse_target(a.target)
    target = Target(host, port, a.server_ca, a.chain, a.key)
    if a.mode == "rate":
        result = run_rate(target, a.concurrency, a.duration, a.procs, a.server_pid)
    elif a.mode == "idle":
        if not a.server_pid:
            raise SystemExit("loadgen: idle needs --server-pid")
        counts = [int(c) for c in a.counts.split(",")]
        result = run_idle(target, counts, a.server_pid, a.settle)
    else:
        result = run_upload(target, a.server_pid)
    print(json.dumps(result))
    print(json.dumps(result, indent=2), file=sys.stderr)


if __name__ == "__main__":
    main()
