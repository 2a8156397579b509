"""Memory under hostile handshakes: peers that send a huge certificate chain and stall.

Run: ``.venv/bin/python bench/hostile_handshakes.py [--peers 50] [--chain-mib 15.7]
[--hold 10] [--mode finished|first-record] [--endpoint-arg=--cert-budget=...]``.

It starts the daemon stand-in and ``albatross-tls-endpoint`` (security on, ``-q``, default
limits) on 127.0.0.1, warms the endpoint up with a few ``info`` commands and then opens
``--peers`` hostile connections at once.  Each peer presents a valid ``create`` leaf whose
image makes the chain ``--chain-mib`` MiB and, in mode ``finished``, sends its whole flight
but the last record (Finished) - OpenSSL then holds the chain, waiting - or, in mode
``first-record``, only up to its first encrypted record, whose first octets claim the whole
Certificate message (OpenSSL allocates that claim at once).  The peers hold their
connections for ``--hold`` seconds, then close them.

Meanwhile the endpoint's RSS is sampled every 50 ms, and a separate process runs one
legitimate ``info`` every 0.5 s and reports its latency.  Printed: RSS before (baseline),
at the peak and ``--settle`` seconds after the peers left, the growth per hostile peer, and
the slowest ``info`` during and after the attack; the last line is the same as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_endpoint import BIN, free_port, write_leaf
from bench.loadgen import Target, one_command, rss_kib
from ca import profiles
from core.wire import UnikernelConfig, UnikernelCreate, UnikernelInfo

_SAMPLE = 0.05


def _split_records(data: bytes) -> list[bytes]:
    """TLS records (5-octet header + body, RFC 8446 §5.1)."""
    records, position = [], 0
    while position < len(data):
        length = int.from_bytes(data[position + 3 : position + 5], "big")
        records.append(data[position : position + 5 + length])
        position += 5 + length
    return records


async def _hostile(port: int, ctx: ssl.SSLContext, mode: str, hold: trio.Event) -> str:
    """One peer: handshake up to the client's flight, send part of it, wait for *hold*."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = ctx.wrap_bio(incoming, outgoing, server_side=False)
        with contextlib.suppress(ssl.SSLWantReadError):
            client.do_handshake()
        await stream.send_all(outgoing.read())
        while True:
            data = await stream.receive_some()
            if not data:
                return "closed before the server's flight"
            incoming.write(data)
            try:
                client.do_handshake()
                break
            except ssl.SSLWantReadError:
                continue
        records = _split_records(outgoing.read())
        del client, incoming, outgoing
        if mode == "finished":
            send = records[:-1]  # all but Finished
        else:
            first = next(i for i, r in enumerate(records) if r[0] == 23)
            send = records[: first + 1]
        del records

        async def send_flight() -> None:
            for record in send:  # a record at a time: the endpoint may stop reading
                await stream.send_all(record)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_flight)
            await hold.wait()
            nursery.cancel_scope.cancel()
        return "held"
    except (trio.BrokenResourceError, OSError) as exc:
        return f"broken: {exc}"
    finally:
        await trio.aclose_forcefully(stream)


async def _attack(args: argparse.Namespace, pid: int, ctx: ssl.SSLContext) -> dict[str, Any]:
    samples: list[tuple[float, int]] = []
    hold = trio.Event()
    outcomes: list[str] = []
    start = time.monotonic()

    async def sample(done: trio.Event) -> None:
        while not done.is_set():
            samples.append((time.monotonic() - start, rss_kib(pid)))
            await trio.sleep(_SAMPLE)

    async def peer() -> None:
        outcomes.append(await _hostile(args.port, ctx, args.mode, hold))

    sampled = trio.Event()
    async with trio.open_nursery() as outer:
        outer.start_soon(sample, sampled)
        async with trio.open_nursery() as peers:
            for _ in range(args.peers):
                peers.start_soon(peer)
            await trio.sleep(args.hold)
            hold.set()
        left = time.monotonic() - start
        await trio.sleep(args.settle)
        sampled.set()
    return {"samples": samples, "left_at": left, "outcomes": outcomes}


def _probe(argv: list[str]) -> None:
    """Child process: one info every 0.5 s until stdin closes; one JSON line per command."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--server-ca", required=True)
    ap.add_argument("--chain", required=True)
    ap.add_argument("--key", required=True)
    a = ap.parse_args(argv)
    target = Target("127.0.0.1", a.port, a.server_ca, a.chain, a.key)
    ctx = target.context()
    origin = time.monotonic()
    os.set_blocking(sys.stdin.fileno(), False)
    while True:
        try:
            if sys.stdin.buffer.read() == b"":
                return
        except BlockingIOError:
            pass
        at = time.monotonic() - origin
        try:
            seconds, ok = one_command(ctx, target)
        except OSError as exc:
            seconds, ok = float("nan"), False
            print(json.dumps({"error": str(exc)}), file=sys.stderr)
        print(json.dumps({"at": at, "seconds": seconds, "ok": ok}), flush=True)
        time.sleep(max(0.0, 0.5 - seconds))


def main() -> None:
    if sys.argv[1:2] == ["probe"]:
        _probe(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--peers", type=int, default=50)
    ap.add_argument("--chain-mib", type=float, default=15.7)
    ap.add_argument("--hold", type=float, default=10.0, help="seconds the peers stay")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds after they left")
    ap.add_argument("--mode", choices=["finished", "first-record"], default="finished")
    ap.add_argument("--endpoint-arg", action="append", default=[], help="extra endpoint option")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="albahostile") as tmp:
        work = Path(tmp)
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
        info_chain, info_key = write_leaf(
            work, "info", ca_cert, ca_key, ".", UnikernelInfo(), "ed25519"
        )
        # os.urandom: the image does not compress, so the chain is the size asked for
        image = os.urandom(int(args.chain_mib * 1024 * 1024) - 2048)
        big_chain, big_key = write_leaf(
            work, "big", ca_cert, ca_key, "big", UnikernelCreate(UnikernelConfig(image=image)),
            "ed25519",
        )  # fmt: skip
        del image
        run = work / "run"
        standin = subprocess.Popen(
            [str(BIN / "albatross-standin"), "--tmpdir", str(run), "--state-dir",
             str(work / "state"), "-q"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        args.port = free_port()
        procs: list[subprocess.Popen[bytes]] = [standin]
        try:
            deadline = time.monotonic() + 20
            while not (run / "util" / "vmmd.sock").exists():
                if time.monotonic() > deadline:
                    raise SystemExit("hostile: the stand-in did not start")
                time.sleep(0.05)
            endpoint = subprocess.Popen(
                [str(BIN / "albatross-tls-endpoint"), "--ip", "127.0.0.1", "--port",
                 str(args.port), "--tmpdir", str(run), "--state-dir", str(work / "security"),
                 "-q", *args.endpoint_arg, str(work / "cacert.pem"), str(work / "server.pem"),
                 str(work / "server.key")],
                stdout=subprocess.DEVNULL, stderr=(work / "endpoint.log").open("wb"),
            )  # fmt: skip
            procs.append(endpoint)
            target = Target(
                "127.0.0.1", args.port, str(work / "cacert.pem"), str(info_chain), str(info_key)
            )
            deadline = time.monotonic() + 20
            while True:
                try:
                    one_command(target.context(), target)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit("hostile: the endpoint did not start") from None
                    time.sleep(0.1)
            for _ in range(20):  # warm-up: lazy imports, first allocations
                one_command(target.context(), target)
            time.sleep(1)
            baseline = rss_kib(endpoint.pid)
            probe = subprocess.Popen(
                [sys.executable, __file__, "probe", "--port", str(args.port), "--server-ca",
                 str(work / "cacert.pem"), "--chain", str(info_chain), "--key", str(info_key)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            )  # fmt: skip
            procs.append(probe)
            time.sleep(1.0)  # the probe's imports
            hostile_ctx = Target(
                "127.0.0.1", args.port, str(work / "cacert.pem"), str(big_chain), str(big_key)
            ).context()
            result = trio.run(_attack, args, endpoint.pid, hostile_ctx)
            assert probe.stdin is not None and probe.stdout is not None
            probe.stdin.close()
            lines = probe.stdout.read().decode().splitlines()
            probe.wait(timeout=30)
            log = (work / "endpoint.log").read_text()
        finally:
            for proc in reversed(procs):
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        proc.kill()
    offset = 1.0  # the probe started this long before the attack's clock
    probes = [json.loads(line) for line in lines]
    during = [p for p in probes if 0 <= p["at"] - offset <= result["left_at"]]
    after = [p for p in probes if p["at"] - offset > result["left_at"]]
    peak = max(rss for _, rss in result["samples"])
    final = result["samples"][-1][1]
    summary = {
        "peers": args.peers,
        "chain_mib": args.chain_mib,
        "mode": args.mode,
        "endpoint_args": args.endpoint_arg,
        "rss_baseline_mib": round(baseline / 1024, 1),
        "rss_peak_mib": round(peak / 1024, 1),
        "rss_after_mib": round(final / 1024, 1),
        "growth_per_peer_mib": round((peak - baseline) / 1024 / args.peers, 2),
        "not_returned_mib": round((final - baseline) / 1024, 1),
        "info_during_max_s": max((p["seconds"] for p in during), default=None),
        "info_during_failed": sum(1 for p in during if not p["ok"]),
        "info_after_max_s": max((p["seconds"] for p in after), default=None),
        "info_after_failed": sum(1 for p in after if not p["ok"]),
        "peer_outcomes": sorted(set(result["outcomes"])),
        "endpoint_errors": [line for line in log.splitlines() if "ERROR" in line][:5],
    }
    print(
        f"{args.peers} hostile peers, {args.chain_mib} MiB chains, mode {args.mode}, "
        f"endpoint {' '.join(args.endpoint_arg) or '(defaults)'}\n"
        f"  RSS baseline {summary['rss_baseline_mib']} MiB, peak {summary['rss_peak_mib']} MiB "
        f"(+{summary['growth_per_peer_mib']} MiB per peer), {args.settle:g} s after they left "
        f"{summary['rss_after_mib']} MiB (+{summary['not_returned_mib']} MiB)\n"
        f"  info during the attack: {len(during)} commands, slowest "
        f"{summary['info_during_max_s']} s, {summary['info_during_failed']} failed; after: "
        f"{len(after)}, slowest {summary['info_after_max_s']} s, "
        f"{summary['info_after_failed']} failed"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
