"""What ``albatross-tls-endpoint --version`` and ``--help`` load: the command line only (issue 13).

A structural check, not a timing: the modules a one-command process needs are imported
where they are used, so the option table must stand without them.
"""

from __future__ import annotations

import json
import subprocess
import sys

from core.wire import DEFAULT_MAX_FRAME
from tlsendpoint.limits import DEFAULT_MAX_FRAME as LIMITS_MAX_FRAME
from tlsendpoint.limits import Limits

HEAVY = ("trio", "cryptography", "core.wire", "sqlite3", "ssl", "tlsendpoint.server")


def test_the_limits_default_frame_is_the_codecs() -> None:
    assert LIMITS_MAX_FRAME == DEFAULT_MAX_FRAME
    assert Limits().max_frame == DEFAULT_MAX_FRAME


def test_the_command_line_loads_without_the_endpoint() -> None:
    code = (
        "import json, sys\n"
        "from tlsendpoint.cli import main\n"
        "try:\n"
        "    main(['--version'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    lines = result.stdout.splitlines()
    assert json.loads(lines[-1]) == []


def test_the_endpoint_without_metrics_does_not_load_them() -> None:
    # an inetd process serves one connection: prometheus-client and the metrics module are
    # imported only when --metrics builds an EndpointMetrics (tlsendpoint.metricsserver)
    code = (
        "import json, sys\n"
        "import tlsendpoint.activation, tlsendpoint.cli, tlsendpoint.server\n"
        "heavy = ('prometheus_client', 'tlsendpoint.metrics')\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(result.stdout.splitlines()[-1]) == []
