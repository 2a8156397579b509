"""``albatross-tls-endpoint``: the command line, compatible with albatross 2.7.2's.

``albatross-tls-endpoint [OPTIONS] CA CERT KEY`` with albatross's options
(``--ip``, ``--port``, ``--systemd-socket-activation``, ``--inetd``,
``--syslog``, ``--tmpdir``; ``-v``/``-q``/``--verbosity``/``--color``/``--version``
are every script's, :mod:`cmdline`; the default level is info) and ours on top:
``--log`` (stderr, syslog, journal, none) and one option per limit in
:class:`tlsendpoint.limits.Limits`.  Exit codes follow albatross: 3 for
``--inetd`` without ``--syslog`` (and logging not disabled), 124 for command
line errors, 125 for start-up errors (TLS files, sockets, activation).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cmdline import Command, log_level
from core.errors import AlbatrossError, ExitStatus, exit_code
from tlsendpoint.errors import SetupError
from tlsendpoint.limits import Limits
from tlsendpoint.metricsoptions import metrics_options
from tlsendpoint.security.setup import security_options

if TYPE_CHECKING:  # imported where used: --version and --help load none of them (issue 13)
    import socket

    import trio

    from tlsendpoint.metricsserver import MetricsPlan
    from tlsendpoint.server import Endpoint

__all__ = ["cli", "main"]

DEFAULT_TMPDIR = "/run/albatross" if sys.platform.startswith("linux") else "/var/run/albatross"
DEFAULT_PORT = 1025
DEFAULT_BACKLOG = 128
# Exits that are no error of ours (README, "Exit codes"); errors exit with exit_code(exc).
EXIT_NO_LOGGING = 2  # albatross: "couldn't install syslog reporter"
EXIT_INETD_LOGGING = 3
EXIT_USAGE = ExitStatus.CLI_FAILED

_LEVELS = {
    "quiet": None,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}

_LIMIT_HELP = {
    "handshake_timeout": "Seconds allowed for the TLS handshake.",
    "upload_timeout": "Seconds to wait for the next chunk of an image or block upload.",
    "daemon_timeout": "Seconds to wait for a daemon to accept, answer or send the next dump chunk.",
    "idle_timeout": "Seconds a console/stats stream may stay silent before it is closed.",
    "send_timeout": "Seconds allowed to send one message to a client.",
    "max_frame": "Largest frame accepted from a client or daemon, in octets.",
    "max_image": "Largest image a client may upload after the handshake, in octets.",
    "max_cert_list": "Largest client certificate chain accepted, in octets.",
    "cert_budget": (
        "Octets of client certificate chains that handshakes may hold at once: a chain"
        " longer than one TLS record takes --max-cert-list octets of it until its"
        " connection closes; when none are left, handshakes wait (--handshake-timeout)."
    ),
    "max_connections": "Connections served at once; more wait in the listen backlog.",
    "grace_period": "Seconds running connections get to finish after SIGTERM.",
}


def _limit_options(func: Any) -> Any:
    for spec in reversed(fields(Limits)):
        default = spec.default
        option = "--" + spec.name.replace("_", "-")
        kind = click.IntRange(min=1) if isinstance(default, int) else click.FloatRange(min=0.001)
        func = click.option(
            option,
            spec.name,
            type=kind,
            default=default,
            show_default=True,
            help=_LIMIT_HELP[spec.name],
        )(func)
    return func


def _level() -> int | None:
    # -v/-q/--verbosity are the common options (cmdline); ours log at info by default.
    return _LEVELS[log_level(click.get_current_context(), default="info")]


async def _serve_listener(endpoint: Endpoint, sock: socket.socket) -> None:
    import trio

    from tlsendpoint.connlog import LOGGER
    from tlsendpoint.notify import notify

    shutdown = trio.Event()
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_on_signal, shutdown)
        addresses = await nursery.start(endpoint.serve, [listener], shutdown)
        listening = ", ".join(str(a) for a in addresses)
        LOGGER.info("listening on %s", listening)
        notify(f"READY=1\nSTATUS=listening on {listening}")
        await shutdown.wait()
        notify("STOPPING=1")
        LOGGER.info("signal received: no new connections")
    LOGGER.info("stopped")


def _worker(endpoint: Endpoint, sock: socket.socket, metrics: MetricsPlan | None = None) -> int:
    import trio

    from tlsendpoint.notify import NOTIFY_SOCKET

    os.environ.pop(NOTIFY_SOCKET, None)  # the supervisor notifies systemd (NotifyAccess=main)
    if metrics is not None:  # after the fork: this worker's own series
        endpoint.metrics = metrics.endpoint_metrics()
    try:
        trio.run(_serve_listener, endpoint, sock)
    finally:
        logging.shutdown()  # a worker ends with os._exit: no atexit writes the log's backlog
    return 0


async def _on_signal(shutdown: trio.Event) -> None:
    import signal

    import trio

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        # a --workers worker starts with them blocked (workers._fork): the receiver is ready
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        async for _ in signals:
            shutdown.set()
            return


async def _serve_one(endpoint: Endpoint, sock: socket.socket) -> None:
    import trio

    async with trio.open_nursery() as nursery:
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))

        async def handle_then_stop() -> None:
            await endpoint.handle(stream)
            nursery.cancel_scope.cancel()

        async def stop_on_signal() -> None:
            shutdown = trio.Event()
            await _on_signal(shutdown)
            nursery.cancel_scope.deadline = trio.current_time() + endpoint.limits.grace_period

        nursery.start_soon(handle_then_stop)
        nursery.start_soon(stop_on_signal)


@click.command(cls=Command)
@click.argument("ca", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("cert", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--ip", default="::", show_default=True, help="Listen address (:: is dual stack).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help=f"TCP port.  [default: {DEFAULT_PORT}]",
)
@click.option(
    "--systemd-socket-activation",
    is_flag=True,
    help="Take the socket from systemd (LISTEN_FDS/LISTEN_PID); Accept=no or yes.",
)
@click.option(
    "--inetd",
    is_flag=True,
    help="Serve the one connection on standard input, then exit (needs --syslog or -q).",
)
@click.option("--syslog", is_flag=True, help="Log to the local syslog (same as --log syslog).")
@click.option(
    "--log",
    "log_target",
    type=click.Choice(["stderr", "syslog", "journal", "none"]),
    default=None,
    help="Where the log goes.  [default: stderr; syslog with --syslog]",
)
@click.option(
    "--tmpdir",
    # not exists=True: a missing tmpdir is a start-up error (125), not a usage error
    type=click.Path(path_type=Path),
    default=DEFAULT_TMPDIR,
    show_default=True,
    help="Directory whose util/ holds vmmd.sock, console.sock and stat.sock.",
)
@click.option(
    "--backlog",
    type=click.IntRange(min=1),
    default=DEFAULT_BACKLOG,
    show_default=True,
    help="Listen backlog of the TCP socket.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes accepting on the listening socket (TCP or systemd Accept=no).",
)
@security_options
@metrics_options
@_limit_options
def cli(
    ca: Path,
    cert: Path,
    key: Path,
    ip: str,
    port: int | None,
    systemd_socket_activation: bool,
    inetd: bool,
    syslog: bool,
    log_target: str | None,
    tmpdir: Path,
    backlog: int,
    workers: int,
    state_dir: Path,
    crl_dir: Path | None,
    audit_log: Path | None,
    audit_fsync: bool,
    no_security: bool,
    metrics: tuple[str, int] | None,
    metrics_public: bool,
    metrics_max_paths: int,
    **limit_values: Any,
) -> None:
    """Remote albatross access: mutually authenticated TLS, one command per connection.

    Accepts TLS 1.3 connections whose client certificate chain leads to CA,
    reads the albatross command from the leaf certificate and the policies
    from the intermediates, forwards them to the daemons under TMPDIR/util/
    and relays the reply.  CERT and KEY are the endpoint's own certificate
    chain and key (PEM).  Logs one line per connection (level info); -v adds
    debug, -q logs nothing.
    """
    if port is not None and systemd_socket_activation:
        raise click.UsageError("Options --port and --systemd-socket-activation are not compatible")
    if inetd and systemd_socket_activation:
        raise click.UsageError("Options --inetd and --systemd-socket-activation are not compatible")
    if inetd and workers > 1:
        raise click.UsageError("Option --workers needs a listening socket, not --inetd")
    if inetd and metrics is not None:
        raise click.UsageError("Option --metrics needs a long-running endpoint, not --inetd")
    if limit_values["cert_budget"] < limit_values["max_cert_list"]:
        raise click.UsageError(
            f"--cert-budget ({limit_values['cert_budget']}) must be at least --max-cert-list"
            f" ({limit_values['max_cert_list']}): a chain of the largest size must fit in it"
        )
    # imported here, not at the top: --version and --help need none of them (issue 13)
    import trio

    from tlsendpoint.activation import inetd_socket, systemd_socket, tcp_listen_socket
    from tlsendpoint.connlog import configure_logging
    from tlsendpoint.memory import fix_mmap_threshold
    from tlsendpoint.metricsserver import open_metrics
    from tlsendpoint.security.setup import open_security
    from tlsendpoint.server import Endpoint
    from tlsendpoint.tlscontext import load_server_context
    from tlsendpoint.workers import run_workers

    level = _level()
    target = log_target or ("syslog" if syslog else "stderr")
    if level is None:
        target = "none"
    if inetd and target == "stderr":
        # stdout and stderr are the client's socket: never log there (albatross exits 3 too)
        sys.exit(EXIT_INETD_LOGGING)
    try:
        configure_logging(target, level or logging.ERROR)
    except OSError as exc:
        # albatross: "ERROR: couldn't install syslog reporter", exit 2
        if not inetd:
            click.echo(f"ERROR: couldn't install {target} logging: {exc.strerror}", err=True)
        sys.exit(EXIT_NO_LOGGING)
    limits = Limits(**limit_values)
    if not inetd:  # a long-running process: what a big handshake took goes back after it
        fix_mmap_threshold()
    try:
        _check_tmpdir(tmpdir)
        context = load_server_context(ca, cert, key, limits.max_cert_list)
        security = open_security(
            ca, state_dir=state_dir, crl_dir=crl_dir, audit_log=audit_log,
            audit_fsync=audit_fsync, no_security=no_security,
            shared=inetd or systemd_socket_activation or workers > 1,
        )  # fmt: skip
        endpoint = Endpoint(context, tmpdir / "util", limits, security=security)
        if inetd:
            trio.run(_serve_one, endpoint, inetd_socket())
            return
        if systemd_socket_activation:
            inherited = systemd_socket(os.environ, os.getpid())
            if not inherited.listening:
                if metrics is not None:
                    from tlsendpoint.connlog import LOGGER

                    LOGGER.warning("--metrics ignored: one connection per process (Accept=yes)")
                trio.run(_serve_one, endpoint, inherited.sock)
                return
            sock = inherited.sock
        else:
            sock = tcp_listen_socket(ip, DEFAULT_PORT if port is None else port, backlog)
        plan = None if metrics is None else open_metrics(
            metrics, metrics_max_paths, workers, security is not None
        )  # fmt: skip
        try:
            if workers > 1:
                serve = lambda: _worker(endpoint, sock, plan)  # noqa: E731
                started = None if plan is None else plan.start
                sys.exit(run_workers(workers, serve, limits.grace_period, started))
            if plan is not None:
                endpoint.metrics = plan.endpoint_metrics()
                plan.start()
            trio.run(_serve_listener, endpoint, sock)
        finally:
            if plan is not None:
                plan.close()
    except AlbatrossError as exc:
        _startup_error(exc.message, target, inetd)
        sys.exit(exit_code(exc))


def _check_tmpdir(tmpdir: Path) -> None:
    """albatrossd makes its tmpdir (``/run/albatross``) when it starts: without it the
    endpoint could serve nothing.  A start-up error (125, and ``Restart=`` tries again)."""
    if not tmpdir.is_dir():
        reason = "is not a directory" if tmpdir.exists() else "does not exist"
        raise SetupError(
            f"--tmpdir {tmpdir} {reason}: albatrossd creates it when it starts"
            " (is albatrossd running, with the same --tmpdir?)"
        )


def _startup_error(message: str, target: str, inetd: bool) -> None:
    """Say why we cannot start, once: on stderr (synchronously, before the exit), and in
    the log unless the log is stderr; under systemd, where stderr goes to the journal
    that ``--log journal`` writes to, in the log alone."""
    from tlsendpoint.connlog import LOGGER, stderr_is_journal

    if target == "stderr":
        click.echo(f"albatross-tls-endpoint: {message}", err=True)
        return
    LOGGER.error("%s", message)
    if target == "journal" and stderr_is_journal(os.environ, sys.stderr.fileno()):
        return
    if not inetd:
        click.echo(f"albatross-tls-endpoint: {message}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point; command line errors exit 124 like albatross (cmdliner)."""
    try:
        cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        sys.exit(130)
    except click.UsageError as exc:
        exc.show()
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
