"""The shipped service files start the endpoint with options it accepts, in the tested modes."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import sys
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


SERVICES = ["albatross-tls-endpoint.service", "albatross-tls-endpoint-accept@.service"]
# What `systemd-analyze security` must score at most (0 is best, 10 fully exposed).
MAX_EXPOSURE = 2.0


def _settings(name: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of the [Service] section, repeated keys kept in order."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in (INETD / name).read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_hardening(service: str) -> None:
    settings = _settings(service)
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["CapabilityBoundingSet"] == [""]
    assert settings["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert settings["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    assert settings["UMask"] == ["0077"]
    for flag in ("NoNewPrivileges", "PrivateDevices", "PrivateTmp", "RestrictNamespaces",
                 "LockPersonality", "MemoryDenyWriteExecute", "ProtectKernelTunables"):  # fmt: skip
        assert settings[flag] == ["yes"], flag
    # the state directory is --state-dir's default; the daemons' tmpdir stays reachable
    assert settings["StateDirectory"] == ["albatross-tls"]
    exec_start = shlex.split(settings["ExecStart"][0])
    assert "--tmpdir=%t/albatross/" in exec_start  # %t is /run for a system service
    assert settings["ReadWritePaths"] == ["-/run/albatross"]
    unit = _unit(service)["Unit"]
    assert "albatross_daemon.service" in unit["Wants"].split()
    assert "albatross_daemon.service" in unit["After"].split()


def test_long_running_service_notifies_and_restarts() -> None:
    settings = _settings("albatross-tls-endpoint.service")
    assert settings["Type"] == ["notify"] and settings["NotifyAccess"] == ["main"]
    assert settings["Restart"] == ["on-failure"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
@pytest.mark.parametrize("service", SERVICES)
def test_systemd_analyze_security_score(service: str, tmp_path: Path) -> None:
    unit = tmp_path / service.replace("@.", "@i.")  # a template is analysed as an instance
    shutil.copy(INETD / service, unit)
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def test_sysusers_declares_the_user_and_its_group() -> None:
    text = (INETD / "sysusers.d" / "albatross-tls.conf").read_text()
    lines = [shlex.split(ln) for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert ["g", "albatross", "-"] in lines
    (user,) = [ln for ln in lines if ln[0] == "u"]
    assert user[1] == "albatross" and user[2] == "-:albatross"
    assert user[4] == "/var/lib/albatross-tls"  # the StateDirectory= of the units
    for service in SERVICES:
        assert _settings(service)["User"] == ["albatross"]


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="no systemd-sysusers here")
def test_sysusers_file_is_accepted(tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", "--dry-run", "-"],
        input=(INETD / "sysusers.d" / "albatross-tls.conf").read_text(),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Creating user 'albatross'" in result.stdout + result.stderr


_PR_SET_MDWE = 65  # Linux 6.3: what MemoryDenyWriteExecute= sets up, for one process


def _mdwe_available() -> bool:
    probe = "import ctypes, sys; sys.exit(ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) != 0)"
    return subprocess.run([sys.executable, "-c", probe], check=False, timeout=60).returncode == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="MemoryDenyWriteExecute is Linux")
def test_endpoint_runs_without_writable_executable_memory() -> None:
    """MemoryDenyWriteExecute=yes: the end-to-end tests (TLS handshakes with client chains
    through pyOpenSSL's callbacks, the stand-in) pass in a process that may map no W+X memory."""
    if not _mdwe_available():
        pytest.skip("this kernel has no PR_SET_MDWE")
    code = (
        "import ctypes, sys, pytest\n"
        f"assert ctypes.CDLL(None).prctl({_PR_SET_MDWE}, 1, 0, 0, 0) == 0\n"
        "sys.exit(pytest.main(['-q', '-x', '-p', 'no:cacheprovider', '-p', 'no:randomly',"
        " 'tests/endpoint/test_e2e.py']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
