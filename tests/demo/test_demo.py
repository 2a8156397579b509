"""The README's main command works: the demo runs its whole story and stops cleanly."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

from client.manifest import read_manifest
from standin.images import make_image
from standin.solo5 import DeviceKind, read_notes

ROOT = Path(__file__).resolve().parents[2]


def test_demo_images_carry_the_notes_albatross_checks() -> None:
    image = make_image(nets=["service0"], blocks=["storage"])
    abi, manifest = read_notes(image)
    assert (abi.target.value, abi.version) == (1, 2)
    assert manifest.devices == ((DeviceKind.NET, "service0"), (DeviceKind.BLOCK, "storage"))
    assert [(d.kind, d.name) for d in read_manifest(image)] == [
        ("net", "service0"),
        ("block", "storage"),
    ]


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--workdir", str(tmp_path / "w")],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "host [unikernel: friend:hello]: success: created unikernel" in out
    assert "command failed maximum amount of unikernels (1) reached" in out
    assert "128 MB memory assigned to unikernel exceeds policy (64MB)" in out
    assert "host [unikernel: :]: [unikernel: friend:hello]: typ solo5" in out
    # explain gives the endpoint's own reason, offline
    assert "refused by: friend:, field unikernels (limit 1, requested 1, used 1)" in out
    # revocation takes effect without a restart, and the audit log verifies
    assert "command failed intermediate certificate CN=friend" in out
    assert "was revoked on" in out
    assert "audit.log: ok, " in out
    # Both services were stopped: no process still runs with the work directory.
    assert _processes_mentioning(str(tmp_path / "w")) == []
    assert "\033" not in out  # a pipe gets no colours
    _check_the_audit_log_starts_with_the_story(tmp_path / "w")


def _check_the_audit_log_starts_with_the_story(work: Path) -> None:
    """The readiness check is no connection: the first audit entry is the operator's info."""
    first = json.loads((work / "audit.log").read_text().splitlines()[0])
    assert (first["decision"], first["command"]) == ("allow", "unikernel info")
    assert "closed before the handshake" not in (work / "endpoint.log").read_text()


def _lines_until(lines: queue.Queue[str | None], marker: str, seen: list[str]) -> None:
    while not seen or marker not in seen[-1]:
        line = lines.get(timeout=180)
        assert line is not None, "demo ended early:\n" + "".join(seen)
        seen.append(line)


def test_demo_keep_suggests_working_commands_and_stops_on_sigterm(tmp_path: Path) -> None:
    work = tmp_path / "k"
    demo = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--workdir", str(work), "--keep"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    try:
        _lines_until(lines, "Press Ctrl-C", seen)
        start = next(i for i, ln in enumerate(seen) if "Still running" in ln)
        suggested = [ln.strip() for ln in seen[start + 1 : -1] if ln.startswith("  ")]
        assert any("alba info" in ln for ln in suggested)
        assert not any("--remote friend" in ln for ln in suggested)  # the friend is revoked
        for line in suggested:  # each works as printed, while the services run
            result = subprocess.run(
                ["bash", "-c", line], capture_output=True, text=True, timeout=120, check=False
            )
            assert result.returncode == 0, (line, result.stdout, result.stderr)
        assert _processes_mentioning(str(work))  # still running before the signal
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=120) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    # the signal stopped the endpoint and the stand-in too
    assert _processes_mentioning(str(work)) == []
    assert "\033" not in "".join(seen)
    _check_the_audit_log_starts_with_the_story(work)


def test_demo_stops_its_services_when_terminated_during_the_story(tmp_path: Path) -> None:
    work = tmp_path / "t"
    demo = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--workdir", str(work)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert demo.stdout is not None
        for line in demo.stdout:  # once both services run
            if "The operator asks what runs on the host" in line:
                break
        assert _processes_mentioning(str(work))
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=120) == 128 + signal.SIGTERM
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert _processes_mentioning(str(work)) == []


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(args)
    return found
