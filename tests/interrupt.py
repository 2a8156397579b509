"""Start a child that a test will interrupt with SIGINT, whatever the test runner inherited.

A process started with SIGINT ignored (a background job of a non-interactive shell,
nohup, some CI launchers) passes that on, and Python then never raises
KeyboardInterrupt: a "Ctrl-C" test would hang.  The child is started through a
tiny Python shim that restores the default disposition and then execs the real
command (thread-safe, unlike ``preexec_fn``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

_SHIM = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def interruptible(argv: Sequence[str]) -> list[str]:
    """*argv* wrapped so that the program starts with SIGINT at its default."""
    return [sys.executable, "-c", _SHIM, *argv]
