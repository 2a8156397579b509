"""``HOST[:PORT]`` and ``[IPv6]:PORT``: the one reader of a network address on a command line.

albatross-client's rule: the last ``:`` separates the port (we also accept ``[v6]:port``).
The client's ``--destination`` defaults the port (1025); the endpoint's ``--metrics`` needs
one and may bind port 0 (the kernel picks).  Pure; errors are :class:`UsageError`.
"""

from __future__ import annotations

from core.errors import UsageError

__all__ = ["parse_host_port"]


def parse_host_port(
    text: str, default_port: int | None, *, allow_port_zero: bool = False
) -> tuple[str, int]:
    """The host and port of *text*; *default_port* when it names none (None: required)."""
    if text == "":
        raise UsageError("empty host: give HOST or HOST:PORT")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise UsageError(f"destination {text!r}: write an IPv6 address as [ADDR]:PORT")
        port_text = rest[1:] if rest else None
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
    else:
        host, port_text = text, None
    if port_text is None:
        if default_port is None:
            raise UsageError(f"{text!r} names no port")
        return host, default_port
    if not host:
        raise UsageError("empty host: give HOST or HOST:PORT")
    try:
        port = int(port_text)
    except ValueError:
        raise UsageError("failed to parse port") from None
    if not (0 if allow_port_zero else 1) <= port < 65536:
        raise UsageError(f"port {port} is not within {0 if allow_port_zero else 1}..65535")
    return host, port
