# Fault injection for the crash tests (issue 11): kill the endpoint at a named step.
#
# The tests must show that SIGKILL at any step of a state-changing request leaves a
# state from which no used leaf runs again.  A real endpoint process reads
# ALBATROSS_TLS_TEST_FAULTS at start; for each step named there it kills itself with
# SIGKILL (no cleanup, no flush, as a power cut or the OOM killer would) when it reaches
# that step.  The steps:
#
#   before-record   the leaf is about to be recorded (nothing written yet)
#   after-record    the record is committed; the command has not reached the daemon
#   after-reply     the daemon has replied; the client has not
#
# ("Before the daemon's reply" needs no hook: the test's daemon holds its reply.)
# For tests only: never set it on a production host.  The endpoint logs a warning at
# start when it is set, so a forgotten variable cannot go unnoticed.
from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["FAULTS_ENV", "NO_FAULTS", "STEPS", "Faults"]

FAULTS_ENV = "ALBATROSS_TLS_TEST_FAULTS"
STEPS = frozenset({"before-record", "after-record", "after-reply"})


@dataclass(frozen=True, slots=True)
class Faults:
    """The steps at which this process kills itself (none in production)."""

    kill_at: frozenset[str] = frozenset()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Faults:
        """``kill@STEP[,kill@STEP...]`` from :data:`FAULTS_ENV`; ValueError names a bad entry."""
        steps: set[str] = set()
        for entry in filter(None, environ.get(FAULTS_ENV, "").split(",")):
            action, _, step = entry.strip().partition("@")
            if action != "kill" or step not in STEPS:
                raise ValueError(
                    f"{FAULTS_ENV}: {entry!r} is not kill@STEP with STEP one of "
                    + ", ".join(sorted(STEPS))
                )
            steps.add(step)
        return cls(frozenset(steps))

    def point(self, step: str) -> None:
        """Reached *step*: die here if the test asked for it."""
        if step in self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


#: Production: no step kills.
NO_FAULTS = Faults()
