"""A stand-in for albatross's daemons (albatrossd, albatross-console, albatross-stats).

It speaks albatross 2.7.2's wire protocol (version 5) on the three unix
sockets, with albatross's policy accounting and failure texts, and runs
unikernels through a pluggable runner (a simulator by default).

May import: :mod:`core`, :mod:`durable` (its state file), :mod:`transport` (framed
sockets), trio and click (its CLI).  Never the endpoint, the CA toolkit or the client: a
stand-in that shared their code could not catch their mistakes (the layers are stated in
``pyproject.toml``).
"""

from __future__ import annotations

from standin.config import StandinConfig
from standin.daemon import Daemon, StandinError
from standin.runner import LaunchSpec, Process, ProcessExit, Runner, SimulatedRunner

__all__ = [
    "Daemon",
    "LaunchSpec",
    "Process",
    "ProcessExit",
    "Runner",
    "SimulatedRunner",
    "StandinConfig",
    "StandinError",
]
