"""albatross-inspect, tested like click tests itself."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from ca.cli import ca_group
from client.inspect_cli import main
from core.clock import fixed_clock
from tests.vectors import CASES, CERTS

RUNNER = CliRunner()


def run(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    result = RUNNER.invoke(main, list(args), input=stdin, obj=fixed_clock(AT))
    return result.exit_code, result.stdout, result.stderr


#: A fixed time for the certificates' status (the vectors' leaves live 310 s).
AT = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)


def test_chain_in_plain_words_as_ca_inspect_prints_it() -> None:
    path = str(CERTS / "leaf" / "bob-create.chain.pem")
    code, out, _ = run(path)
    assert code == 0
    assert out == CliRunner().invoke(ca_group, ["inspect", path], obj=fixed_clock(AT)).stdout
    assert out.splitlines()[:4] == [
        "certificate: request leaf /CN=b1, issued by /CN=bob",
        "  serial 077b5997be5efa7f1b01, ed25519 key, signed with ed25519",
        "  valid from 2026-11-27T18:08:43+00:00 until 2026-11-27T18:13:53+00:00 (310 s), "
        "expired now",
        "  signed by the next certificate: yes",
    ]
    assert (
        "  albatross policy: 1 unikernels 0 CPUids 32 MB memory 10 MB block, bridges: service"
        in out.splitlines()
    )


def test_csr_as_json() -> None:
    path = str(CERTS / "ca" / "alice.req")
    code, out, _ = run("--json", path)
    assert code == 0
    assert out == (
        '{"file":"' + path + '","objects":[{"albatross":{"critical":false,'
        '"hex":"3022020105a41da11b3019300302010002010202014002016430090c0773657276696365",'
        '"kind":"policy","policy":{"block":100,"bridges":["service"],"cpuids":[0],"memory":64,'
        '"unikernels":2},"text":"2 unikernels 0 CPUids 64 MB memory 100 MB block, bridges: '
        'service","version":5},"common_name":"alice","extensions":[{"critical":false,'
        '"name":"albatross","oid":"1.3.6.1.4.1.49836.42","value":"albatross extension"}],'
        '"key_type":"ed25519",'
        '"sha256":"baf1b488676fa535d0cd5586f72485c46b36e25940453626e187874e419e438a",'
        '"signature_valid":true,"subject":"/CN=alice","type":"certificate request"}],'
        '"record":"inspect","schema":1,"type":"objects"}\n'
    )
    assert out == CliRunner().invoke(ca_group, ["inspect", "--json", path]).stdout


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
    assert out == (
        '{"header":{"name":":ghost","sequence":24,"type":"Header","version":5},'
        '"payload":{"message":"destroy: not found","type":"Failure"},"record":"message",'
        '"schema":1}\n'
    )


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
    assert proc.stdout.startswith("certificate: root CA /CN=ca, issued by /CN=ca\n")
    assert "  albatross extension: none\n" in proc.stdout
