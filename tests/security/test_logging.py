"""Security messages go through the logger the endpoint configures (--log), never elsewhere."""

from __future__ import annotations

import logging

from tlsendpoint.security import gate, hooks


def test_security_loggers_are_under_the_endpoint_logger() -> None:
    # connlog configures "albatross" (stderr, syslog, journal or none); a logger outside
    # it would reach Python's last-resort stderr handler: the client's socket in inetd mode.
    for log in (gate.log, hooks.log):
        parent = log.parent
        assert parent is not None
        while parent.name not in ("albatross", "root"):
            parent = parent.parent if parent.parent is not None else logging.getLogger()
        assert parent.name == "albatross", log.name
