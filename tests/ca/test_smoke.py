"""One subprocess run of the CA commands through the installed `alba` entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.ca.helpers import CERTS

ALBA = Path(sys.executable).parent / "alba"


def test_alba_generate_sign_inspect(tmp_path: Path) -> None:
    def alba(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ALBA), *args], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )

    generated = alba("generate", "ca", "db")
    assert (generated.returncode, generated.stdout, generated.stderr) == (0, "", "")
    signed = alba("sign", "cacert.pem", "db", "ca.key", str(CERTS / "ca/alice.req"))
    assert signed.returncode == 0
    assert signed.stdout == (
        "signing certificate with subject /CN=alice\n"
        "signing policy add policy: 2 unikernels 0 CPUids 64 MB memory 100 MB block, "
        "bridges: service\n"
    )
    inspected = alba("ca", "inspect", "alice.pem")
    assert inspected.returncode == 0
    assert (
        inspected.stdout.splitlines()[0] == "certificate: delegated CA /CN=alice, issued by /CN=ca"
    )
    refused = alba("sign", "alice.pem", "db", "ca.key", str(CERTS / "ca/bob.req"))
    assert (refused.returncode, refused.stdout.splitlines()[-1]) == (
        124,
        "alba: [ERROR] error while signing: Public key of certificate doesn't match private key",
    )
