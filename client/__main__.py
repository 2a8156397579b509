"""``python -m client ARGS…``: alba, named ``$ALBA_PROG`` (how a fleet starts each remote's run)."""

from __future__ import annotations

import os
import sys

from client.cli import alba

alba.main(sys.argv[1:], prog_name=os.environ.pop("ALBA_PROG", "alba"))
