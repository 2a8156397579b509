"""Settings of the stand-in daemon, with their defaults (one place, documented).

The "host" has no bridge unless one is named, like albatrossd on a machine
without bridges (it finds the bridges when it starts).  The Python defaults
of CPUs, memory and block storage are a fixed small host, so tests do not
depend on the machine; the command line discovers them instead, as albatrossd
does (:func:`discovered_host`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from core.routing import Socket
from core.wire import DEFAULT_MAX_FRAME, Policy
from core.wire.policy import MAX_INT

__all__ = ["StandinConfig", "discovered_host"]

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class StandinConfig:
    """Where the stand-in listens and keeps its state, and what the "host" has."""

    tmpdir: Path  # sockets in <tmpdir>/util/
    state_dir: Path  # state file and block devices
    bridges: tuple[str, ...] = ()  # host bridges (root policy, "interface exists"); none
    cpus: int = 2  # root policy CPU ids 0..cpus-1
    memory: int = 4096  # root policy memory in MB
    block_space: int = 10000  # root policy block storage in MB
    stats_interval: float = 10.0  # seconds between statistics rounds (albatross default)
    max_subscribers: int = 5  # console subscribers per unikernel (albatross default)
    max_frame: int = DEFAULT_MAX_FRAME  # largest frame body we read
    idle_timeout: float = 300.0  # seconds a vmmd/stats connection may wait for its next command
    stream_timeout: float = 60.0  # seconds between two chunks of a block-set stream
    stop_timeout: float = 10.0  # seconds to wait for unikernels to stop at shutdown

    def root_policy(self) -> Policy:
        """The discovered root policy (albatross reads it from the host at every start)."""
        return Policy(
            unikernels=MAX_INT,
            cpuids=frozenset(range(self.cpus)),
            memory=self.memory,
            block=self.block_space,
            bridges=frozenset(self.bridges),
        )

    @property
    def util_dir(self) -> Path:
        return self.tmpdir / "util"

    def socket(self, name: str) -> Path:
        """The socket of daemon *name* (``vmmd``, ``console``, ``stat``: :class:`Socket`)."""
        return self.util_dir / Socket(name).filename

    @property
    def block_dir(self) -> Path:
        return self.state_dir / "block"


def discovered_host(block_dir: Path) -> tuple[int, int, int]:
    """(CPUs, memory MB, block storage MB) as albatrossd discovers them at its start.

    Vmm_unix.root_policy (vmm_stubs.c): the online CPUs, the physical memory, and
    the size of the file system holding the block directory (its nearest existing
    ancestor here, since the stand-in creates the directory later).
    """
    cpus = os.sysconf("SC_NPROCESSORS_ONLN")
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // MIB
    where = block_dir.absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    disk = os.statvfs(where)
    return cpus, memory, disk.f_blocks * disk.f_frsize // MIB
