"""The README's main command works: the demo runs its whole story and stops cleanly."""

from __future__ import annotations

import subprocess
import sys
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
