"""Audit log benchmark: what recording before forwarding costs (issue 11 point 2).

Run: ``.venv/bin/python bench/bench_audit.py [--records N] [--dir DIR]``.  Prints a
Markdown table: microseconds per record for a plain append, for the endpoint's way
(a worker thread under a deadline, one task or 16 at once), each with and without
fsync; the start-up check of a large log; and ``verify`` throughput.  The files
live in DIR (default: a temporary directory; fsync figures depend on its disk).
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import trio

from tlsendpoint.security.rules.auditformat import AuditRecord, OutcomeRecord
from tlsendpoint.security.state.auditlog import AuditLog, append_async, open_audit_log, verify

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CHAIN = [{"subject": f"CN=c{i}", "sha256": "ab" * 32} for i in range(3)]


def decision(i: int) -> AuditRecord:
    command = "unikernel create memory=32MB cpuids=0 image=4096B"
    return AuditRecord(NOW, f"192.0.2.1:{i}", CHAIN, f"alice:bob:u{i}", command, "allow", "", 0.01)


def outcome(seq: int) -> OutcomeRecord:
    return OutcomeRecord(NOW, "192.0.2.1:1", seq, "success: created unikernel", 0.02)


def timed(run: Callable[[], None], records: int) -> float:
    """Microseconds per record."""
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) / records * 1e6


def plain(path: Path, count: int, fsync: bool) -> float:
    log = AuditLog(path, fsync=fsync)

    def run() -> None:
        for i in range(count):
            log.append(outcome(log.append(decision(i)).seq))

    try:
        return timed(run, 2 * count)
    finally:
        log.close()


def threaded(path: Path, count: int, fsync: bool, tasks: int) -> float:
    log = AuditLog(path, fsync=fsync)

    async def one(first: int) -> None:
        for i in range(first, count, tasks):
            allowed = await append_async(log, decision(i))
            await append_async(log, outcome(allowed.seq))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for first in range(tasks):
                nursery.start_soon(one, first)

    try:
        return timed(lambda: trio.run(main), 2 * count)
    finally:
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000, help="commands per measurement")
    parser.add_argument("--dir", type=Path, default=None, help="where the logs go")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as name:
        work = Path(name)
        count = args.records
        print(f"{count} commands (an allow and an outcome each), files in {work}\n")
        print("| way | fsync | µs per record |")
        print("|---|---|---:|")
        for fsync in (False, True):
            n = count if not fsync else max(100, count // 10)
            rows = [
                ("append (plain, one thread)", plain(work / f"p{fsync}.log", n, fsync)),
                ("append_async, 1 task", threaded(work / f"a{fsync}.log", n, fsync, 1)),
                ("append_async, 16 tasks", threaded(work / f"c{fsync}.log", n, fsync, 16)),
            ]
            for way, micros in rows:
                print(f"| {way} | {'yes' if fsync else 'no'} | {micros:.0f} |")
        big = work / "big.log"
        log = AuditLog(big)
        for i in range(50_000):
            log.append(decision(i))
        log.close()
        size = big.stat().st_size
        started = time.perf_counter()
        open_audit_log(big, fsync=False).close()
        start_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        result = verify(big)
        seconds = time.perf_counter() - started
        print(f"\nstart-up check of a {size / 1e6:.0f} MB log: {start_ms:.2f} ms")
        print(
            f"verify: {result.records} records, {size / 1e6:.0f} MB in {seconds:.2f} s "
            f"({size / 1e6 / seconds:.0f} MB/s)"
        )


if __name__ == "__main__":
    main()
