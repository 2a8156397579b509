"""Settings of the stand-in daemon, with their defaults (one place, documented)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tlsendpoint.wire import DEFAULT_MAX_FRAME, Policy
from tlsendpoint.wire.policy import MAX_INT

__all__ = ["StandinConfig"]


@dataclass(frozen=True, slots=True)
class StandinConfig:
    """Where the stand-in listens and keeps its state, and what the "host" has."""

    tmpdir: Path  # sockets in <tmpdir>/util/
    state_dir: Path  # state file and block devices
    bridges: tuple[str, ...] = ("service",)  # host bridges (root policy, "interface exists")
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
        return self.util_dir / f"{name}.sock"

    @property
    def block_dir(self) -> Path:
        return self.state_dir / "block"
