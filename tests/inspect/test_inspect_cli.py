"""albatross-inspect, tested like click tests itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from client.inspect_cli import main
from tests.vectors import CASES, CERTS

RUNNER = CliRunner()


def run(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    result = RUNNER.invoke(main, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_chain_in_plain_words() -> None:
    code, out, _ = run(str(CERTS / "leaf" / "bob-create.chain.pem"))
    assert code == 0
    assert "certificate: CN=b1" in out
    assert "albatross extension: unikernel create: config image 2827 octets" in out
    assert "memory 16" in out
    assert (
        "albatross extension: policy add: policy 1 unikernels 0 CPUids 32 MB memory 10 MB block,"
        " bridges: service" in out
    )


def test_csr_as_json() -> None:
    code, out, _ = run("--json", str(CERTS / "ca" / "alice.req"))
    assert code == 0
    (view,) = json.loads(out)
    assert view["what"] == "certificate request"
    ext = view["albatross_extension"]
    assert ext["critical"] is False
    assert ext["command"]["type"] == "policy add"
    assert ext["command"]["policy"] == {
        "unikernels": 2,
        "cpuids": [0],
        "memory": 64,
        "block": 100,
        "bridges": ["service"],
    }


def test_reencode_certificate_gives_the_extension_hex() -> None:
    desc = json.loads((CERTS / "leaf" / "create.json").read_text())
    code, out, _ = run("--reencode", str(CERTS / "leaf" / "create.pem"))
    assert code == 0
    assert out.strip() == desc["leaf"]["albatross_ext_hex"]


def test_frame_with_and_without_prefix() -> None:
    line = (CASES / "016-console-ticker" / "frames.jsonl").read_text().splitlines()[1]
    framed = bytes.fromhex(json.loads(line)["hex"])
    for data in (framed, framed[4:]):
        code, out, _ = run("-", stdin=data)
        assert code == 0
        assert out.strip() == "console subscribe for :tick1 (version 5, sequence 12): count 20"
    code, out, _ = run("--reencode", "-", stdin=framed)
    assert out.strip() == framed[4:].hex()


def test_hex_input_and_json_message() -> None:
    # E3 of wire.md: the failure reply of case 027.
    reply = (
        "302d3015020105040800000000000000180c063a67686f7374"
        "a2140c1264657374726f793a206e6f7420666f756e64"
    )
    code, out, _ = run("--hex", "--json", "-", stdin=reply.encode())
    assert code == 0
    data = json.loads(out)
    assert data["header"] == {"name": ":ghost", "sequence": 24, "version": 5}
    assert data["payload"] == {"type": "failure", "message": "destroy: not found"}


def test_garbage_is_refused_with_the_reason() -> None:
    code, out, err = run("--hex", "-", stdin=b"30 03 02 01 05")
    assert code == 2
    assert out == ""
    assert err == "albatross-inspect: wire: header: unexpected tag 0x02\n"
    code, _, err = run("--hex", "-", stdin=b"zz")
    assert code == 2
    assert err == "albatross-inspect: --hex: the input is not hex text\n"


def test_reachable_from_alba() -> None:
    from client.cli import alba

    info = "0000001c301a3010020105040800000000000000000c013aa006a304b3020500"
    result = RUNNER.invoke(alba, ["inspect", "--hex", "-"], input=info)
    assert result.exit_code == 0
    assert result.stdout == "unikernel info for : (version 5, sequence 0)\n"


def test_console_script_runs(tmp_path: Path) -> None:
    # One subprocess smoke test of the installed entry point.
    proc = subprocess.run(
        [sys.executable, "-m", "client.inspect_cli", str(CERTS / "ca" / "root-cacert.pem")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "certificate: CN=ca" in proc.stdout
    assert "albatross extension: none" in proc.stdout
