"""What the security store costs a request: state-changing (a durable record) and read-only.

Run: ``.venv/bin/python bench/bench_store.py [--quick] [--dir DIR]`` (DIR: where the store
goes, default a temporary directory under /var/tmp - use the file system of your
``--state-dir``: the fsync is most of the cost).  Prints Markdown tables:

* per request, as the endpoint pays it (each call through the store's worker thread;
  wall time per call, and the process's CPU per call over all its threads):
  a state-changing leaf recorded (check + insert + commit with fsync), and a read-only
  request's anti-rollback check of a two-deep chain (one read transaction), with an
  empty store and with a store holding many records; beside them the bare thread hop
  and a bare ``write`` + ``fsync`` of one line in the same directory (the floor of any
  durable record - what the previous hand-written journal paid);
* start-up: opening the store and checking every record (SQLite's integrity_check and
  our row checksums), which every start (and every inetd connection) pays.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from core.wire import Name
from tlsendpoint.security.rules.replay import LeafRecord
from tlsendpoint.security.rules.rollback import Delegation, Seen
from tlsendpoint.security.state.records import STORE_FILE, SecurityStore

NOW = 1_800_000_000
LATER = NOW + 86_400


def leaf(number: int) -> LeafRecord:
    return LeafRecord(f"{number:032x}:{number:x}", LATER, f"owner{number % 50}", "CN=x", number)


CHAIN = [
    Delegation(Name(("alice",), None), NOW - 10, LATER, 1, "CN=alice"),
    Delegation(Name(("alice", "bob"), None), NOW - 10, LATER, 2, "CN=bob"),
]


def fresh_store(directory: Path, records: int) -> SecurityStore:
    for leftover in directory.glob(f"{STORE_FILE}*"):
        leftover.unlink()
    store = SecurityStore(directory / STORE_FILE)
    store.open()
    if records:
        leaves = [(r.key, r.not_after, r.owner) for r in map(leaf, range(10**9, 10**9 + records))]
        paths = {f"p{i}:": Seen(NOW, i + 1, LATER) for i in range(min(records, 1000))}
        store.import_records(leaves, paths)
    store.record_delegations(CHAIN, NOW)
    return store


async def timed(
    count: int, action: Callable[[int], Awaitable[object]]
) -> tuple[list[float], float]:
    """Wall time of each call (us), and the process's CPU per call (us, all threads)."""
    times = []
    cpu = time.process_time()
    for number in range(count):
        started = time.perf_counter()
        await action(number)
        times.append((time.perf_counter() - started) * 1e6)
    return times, (time.process_time() - cpu) * 1e6 / count


def row(what: str, measured: tuple[list[float], float]) -> str:
    times, cpu = measured
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    median = statistics.median(ordered)
    return f"| {what} | {median:,.0f} | {p99:,.0f} | {cpu:,.0f} | {len(ordered)} |"


async def per_request(directory: Path, count: int, records: int) -> list[str]:
    store = fresh_store(directory, records)
    limiter = trio.CapacityLimiter(1)
    lines = []
    try:
        lines.append(row(
            f"state-changing: record a leaf ({records:,} records held)",
            await timed(count, lambda n: store.call(store.record_leaf, leaf(n), NOW)),
        ))  # fmt: skip
        lines.append(row(
            f"read-only: anti-rollback check, 2 delegations ({records:,} records held)",
            await timed(count, lambda n: store.call(store.record_delegations, CHAIN, NOW)),
        ))  # fmt: skip
        if records == 0:
            lines.append(row(
                "floor: the worker-thread hop alone",
                await timed(count, lambda n: trio.to_thread.run_sync(int, limiter=limiter)),
            ))  # fmt: skip
            journal = os.open(directory / "journal-floor", os.O_WRONLY | os.O_APPEND | os.O_CREAT)

            def append(number: int) -> None:
                os.write(journal, f"{leaf(number).key} {LATER} owner\n".encode())
                os.fsync(journal)

            lines.append(row(
                "floor: write + fsync of one journal line (thread)",
                await timed(count, lambda n: trio.to_thread.run_sync(append, n, limiter=limiter)),
            ))  # fmt: skip
            os.close(journal)
    finally:
        store.close()
    return lines


def start_up(directory: Path, records: int, runs: int) -> str:
    fresh_store(directory, records).close()
    times = []
    for _ in range(runs):
        store = SecurityStore(directory / STORE_FILE)
        started = time.perf_counter()
        store.open()
        store.ready()
        times.append((time.perf_counter() - started) * 1e3)
        store.close()
    return f"| {records:,} | {statistics.median(times):,.1f} | {max(times):,.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and records")
    parser.add_argument("--dir", type=Path, default=None, help="where the store goes")
    args = parser.parse_args()
    count = 100 if args.quick else 1000
    sizes = [0, 20_000] if args.quick else [0, 20_000, 190_000]  # the bound is 200 000
    with tempfile.TemporaryDirectory(dir=args.dir or "/var/tmp") as temporary:
        directory = Path(temporary)
        print(f"store in {directory} (synchronous=FULL, WAL)\n")
        print("| per request (worker thread) | median us | p99 us | CPU us | requests |")
        print("|---|---|---|---|---|")
        for records in sizes:
            for line in trio.run(per_request, directory, count, records):
                print(line)
        print("\n| records held | start-up: open + full check, median ms | max ms |")
        print("|---|---|---|")
        for records in sizes:
            print(start_up(directory, records, 3 if args.quick else 5))


if __name__ == "__main__":
    main()
