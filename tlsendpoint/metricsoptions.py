"""The ``--metrics`` options of albatross-tls-endpoint, apart from the server.

Building the command line (``--version`` and ``--help`` among it) imports this module
only: prometheus-client, wsgiref and the metrics themselves (:mod:`.metricsserver`,
:mod:`.metrics`) are imported when metrics are served (issue 13).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import click

from core.errors import UsageError
from core.hostport import parse_host_port
from tlsendpoint.limits import DEFAULT_MAX_PATHS

__all__ = ["is_loopback", "metrics_options", "parse_address"]


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` (:mod:`core.hostport`); click.BadParameter if not."""
    try:
        return parse_host_port(text, None, allow_port_zero=True)
    except UsageError as exc:
        raise click.BadParameter(
            f"{text!r} is not HOST:PORT (for example 127.0.0.1:9464 or [::1]:9464): {exc.message}"
        ) from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _address_option(
    ctx: click.Context, _: click.Parameter, value: str | None
) -> tuple[str, int] | None:
    if value is None:
        return None
    host, port = parse_address(value)
    if not ctx.params.get("metrics_public") and not is_loopback(host):
        raise click.BadParameter(
            f"{host} is not a loopback address: the metrics name delegations and their"
            " usage without authentication; add --metrics-public to serve them there"
        )
    return host, port


def metrics_options(func: Any) -> Any:
    """The click options of :func:`open_metrics` (``metrics``, ``metrics_public``, ...)."""
    options = [
        click.option(
            "--metrics",
            metavar="HOST:PORT",
            default=None,
            callback=_address_option,
            help="Serve Prometheus metrics over HTTP at this address (a loopback one unless"
            " --metrics-public).  [default: off]",
        ),
        click.option(
            "--metrics-public",
            is_flag=True,
            is_eager=True,  # --metrics checks it
            help="Allow --metrics on a non-loopback address (no authentication: firewall it).",
        ),
        click.option(
            "--metrics-max-paths",
            type=click.IntRange(min=1),
            default=DEFAULT_MAX_PATHS,
            show_default=True,
            help="Delegation paths with series of their own (per worker); later ones count"
            ' as path="other".',
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func
