"""Security messages go through the logger the endpoint configures (--log), never elsewhere."""

from __future__ import annotations

import logging

from tlsendpoint.security import gate, process, quotaguard
from tlsendpoint.security.state import auditlog


def test_security_loggers_are_under_the_endpoint_logger() -> None:
    # connlog configures "albatross" (stderr, syslog, journal or none); a logger outside
    # it would reach Python's last-resort stderr handler: the client's socket in inetd mode.
    endpoint_root = logging.getLogger("albatross")
    for log in (auditlog.log, gate.log, process.log, quotaguard.log):
        assert log.parent is endpoint_root, log.name
