"""The shipped service files start the endpoint with options it accepts, in the tested modes."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import click
import pytest

from tests.vectors import ROOT
from tlsendpoint.cli import cli

INETD = ROOT / "inetd"


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(INETD / name)
    return parser


def _parse(args: list[str], tmp_path: Path) -> dict[str, object]:
    """Parse *args* with our CLI, pointing the file arguments at real files."""
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    fixed = [a.replace("%t/albatross/", str(tmp_path)) for a in args[:-3]]
    fixed = [str(tmp_path) if a.startswith(("/run/", "/var/run/")) else a for a in fixed]
    fixed = [
        a.split("=")[0] + "=" + str(tmp_path) if a.startswith("--tmpdir=") else a for a in fixed
    ]
    fixed += [str(tmp_path / n) for n in ("ca.pem", "cert.pem", "key.pem")]
    ctx = cli.make_context("albatross-tls-endpoint", fixed)
    return dict(ctx.params)


@pytest.mark.parametrize(
    "service", ["albatross-tls-endpoint.service", "albatross-tls-endpoint-accept@.service"]
)
def test_systemd_services(service: str, tmp_path: Path) -> None:
    exec_start = shlex.split(_unit(service)["Service"]["ExecStart"])
    params = _parse(exec_start[1:], tmp_path)
    assert params["systemd_socket_activation"] is True
    assert params["log_target"] == "journal"


@pytest.mark.parametrize(
    ("socket", "accept"),
    [("albatross-tls-endpoint.socket", "no"), ("albatross-tls-endpoint-accept.socket", "yes")],
)
def test_sockets(socket: str, accept: str) -> None:
    section = _unit(socket)["Socket"]
    assert section["ListenStream"] == "1025"
    assert section["Accept"] == accept


def test_inetd_line(tmp_path: Path) -> None:
    (line,) = [
        ln
        for ln in (INETD / "inetd.conf").read_text().splitlines()
        if ln and not ln.startswith("#")
    ]
    fields = line.split()
    assert fields[:5] == ["blackjack", "stream", "tcp", "nowait", "albatross"]
    params = _parse(fields[7:], tmp_path)
    assert params["inetd"] is True and params["syslog"] is True


def test_xinetd(tmp_path: Path) -> None:
    text = (INETD / "xinetd.d" / "albatross-tls-endpoint").read_text()
    settings = dict(
        (k.strip(), v.strip())
        for k, _, v in (ln.partition("=") for ln in text.splitlines() if "=" in ln)
    )
    assert settings["wait"] == "no" and settings["port"] == "1025"
    params = _parse(settings["server_args"].split(), tmp_path)
    assert params["inetd"] is True and params["syslog"] is True


def test_unknown_option_would_be_caught(tmp_path: Path) -> None:
    with pytest.raises(click.UsageError):
        _parse(["--no-such-option", "a", "b", "c"], tmp_path)
