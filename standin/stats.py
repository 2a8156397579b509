"""albatross-stats' bookkeeping (albatross_stats_pure.ml) and plausible samples.

vmmd tells the stats daemon which processes to watch (``stats add`` with pid
and taps, ``stats remove``); clients subscribe at a name or path, replacing an
earlier subscriber at exactly that name (albatross #281).  Every interval each
watched unikernel is reported to every subscriber on the way from the root
to its name, with the name made relative to the subscriber's path.

A stand-in has no real process to measure, so :func:`sample` makes up
numbers of the right shape that grow with the uptime (the Linux flavour:
rusage plus a kinfo_mem record, no bhyve VMM counters).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from core.wire import (
    Header,
    Ifdata,
    KinfoMem,
    Message,
    Name,
    Rusage,
    StatsData,
    Timeval,
)
from standin.trie import Trie

__all__ = ["StatsBook", "Watched", "sample"]

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class Watched:
    vmmdev: str
    pid: int
    taps: tuple[tuple[str, str], ...]  # (bridge, tap)
    memory: int
    started: datetime


def _timeval(micros: int) -> Timeval:
    return Timeval(micros // 1_000_000, micros % 1_000_000)


def sample(watched: Watched, now: datetime) -> StatsData:
    """Made-up but well-formed statistics for a unikernel that has run since ``started``."""
    up = max(0, int((now - watched.started).total_seconds()))
    cpu = (up // 10 + 1) * 10_000  # 10 ms of system time per 10 s, like an idle ticker
    rusage = Rusage(
        utime=_timeval(0),
        stime=_timeval(cpu),
        maxrss=417,
        minflt=170,
        nvcsw=up + 1,
        nivcsw=6,
    )
    start = int(watched.started.timestamp() * 1_000_000)
    kinfo = KinfoMem(
        vsize=(watched.memory + 2) * 1024 * 1024,
        rss=417,
        tsize=5,
        dsize=90,
        ssize=90,
        runtime=cpu,
        cow=0,
        start=_timeval(start),
    )
    ifdata = tuple(
        Ifdata(bridge=bridge, mtu=1500, baudrate=10_000_000) for bridge, _tap in watched.taps
    )
    return StatsData(rusage=rusage, ifdata=ifdata, vmm_stats=None, kinfo_mem=kinfo)


class StatsBook(Generic[S]):
    def __init__(self) -> None:
        self.watched: Trie[Watched] = Trie()
        self.subscribers: Trie[tuple[int, S]] = Trie()

    def add(self, name: Name, watched: Watched) -> None:
        self.watched.insert(name, watched)

    def remove(self, name: Name) -> None:
        self.watched.remove(name)

    def subscribe(self, name: Name, version: int, subscriber: S) -> S | None:
        """Add a subscriber; returns the one it replaces (to be closed)."""
        old = self.subscribers.insert(name, (version, subscriber))
        return None if old is None else old[1]

    def unsubscribe(self, name: Name, subscriber: S) -> None:
        current = self.subscribers.find(name)
        if current is not None and current[1] is subscriber:
            self.subscribers.remove(name)

    def tick(self, now: datetime) -> list[tuple[S, Name, Message]]:
        """One round of data: (subscriber, its subscription name, message)."""
        out: list[tuple[S, Name, Message]] = []
        for vmid, watched in self.watched.all():
            listeners = self.subscribers.collect(vmid)
            if not listeners:
                continue
            data = sample(watched, now)
            for sub_name, (version, subscriber) in listeners:
                header = Header(vmid.relative_to(sub_name.path), 0, version)
                out.append((subscriber, sub_name, Message(header, data)))
        return out
