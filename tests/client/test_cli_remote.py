"""``alba`` in remote mode against a fake TLS endpoint: output lines and exit codes.

Texts and codes are albatross-client's (behaviour.md §4.2, §4.6, §4.7), except
the deliberate difference that a server closing without a reply is exit 121.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509

from client.cli import alba
from core.clock import fixed_clock
from core.wire import (
    BlockData,
    BlockDeviceImage,
    BlockSet,
    ConsoleData,
    ConsoleSubscribe,
    Failure,
    Name,
    PolicyInfo,
    StringReply,
    UnikernelDestroy,
    UnikernelImage,
    UnikernelInfo,
    UnikernelInfoList,
)
from tests.client.helpers import Pki, Seen, fake_endpoint, reply
from tests.vectors import CASES

TICKER = CASES / "005-create-ticker-args" / "fake_ticker.hvt"
NET = CASES / "044-create-net-wrong-devname" / "fake_net.hvt"
PROG = "albatross-client"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def run(args: list[str]) -> Result:
    return CliRunner().invoke(alba, args, prog_name=PROG)


def answer(*payloads: object) -> object:
    def responder(seen: Seen) -> list[bytes]:
        name = Name.parse(":" + (seen.cn or "") if seen.cn not in (None, ".") else ":")
        return [reply(name, p) for p in payloads]  # type: ignore[arg-type]

    return responder


def test_destroy_success(pki: Pki) -> None:
    with fake_endpoint(pki, answer(StringReply("destroyed unikernel"))) as (port, seen):  # type: ignore[arg-type]
        result = run(["destroy", "tick2", *pki.remote_args(port)])
    assert result.exit_code == 0
    assert result.stdout == "host [unikernel: :tick2]: success: destroyed unikernel\n"
    assert [(s.cn, s.command) for s in seen] == [("tick2", UnikernelDestroy())]


def test_failure_reply_is_117(pki: Pki) -> None:
    with fake_endpoint(pki, answer(Failure("destroy: not found"))) as (port, _):  # type: ignore[arg-type]
        result = run(["destroy", "ghost", *pki.remote_args(port)])
    assert result.exit_code == 117
    assert result.stdout == (
        "albatross-client: [WARNING] host [unikernel: :ghost]: command failed destroy: not found\n"
    )


def test_close_without_reply_is_an_error(pki: Pki) -> None:
    with fake_endpoint(pki, answer()) as (port, seen):  # type: ignore[arg-type]
        result = run(["info", *pki.remote_args(port)])
    assert result.exit_code == 121
    assert result.stdout == (
        "albatross-client: [ERROR] the server closed the connection without replying "
        "(the command was refused or the server failed)\n"
    )
    assert [(s.cn, s.command) for s in seen] == [(".", UnikernelInfo())]


def test_info_json(pki: Pki) -> None:
    with fake_endpoint(pki, answer(UnikernelInfoList(()))) as (port, _):  # type: ignore[arg-type]
        result = run(["info", "--json", *pki.remote_args(port)])
    assert result.exit_code == 0
    assert result.stdout == (
        '{"name":":","record":"reply","reply":{"type":"UnikernelInfoList","unikernels":[],'
        '"variant":"current"},"schema":1}\n'
    )


def test_own_chain_not_trusted_is_116(pki: Pki) -> None:
    args = ["info", "--destination", "127.0.0.1:9", "--ca", pki.path("cacert.pem"),
            "--ca-key", pki.path("ca.key"), "--server-ca", pki.path("stranger.pem")]  # fmt: skip
    result = run(args)
    assert result.exit_code == 116
    assert result.stdout.startswith(
        "albatross-client: [ERROR] TLS validation error of provided certificate chain: "
    )


def test_server_certificate_from_another_ca_is_120(pki: Pki) -> None:
    with fake_endpoint(pki, answer(StringReply("x")), server_cert="impostor") as (port, seen):  # type: ignore[arg-type]
        result = run(["info", *pki.remote_args(port)])
    assert result.exit_code == 120
    assert result.stdout.startswith("albatross-client: [ERROR] remote authentication failure ")
    assert seen == []


def test_server_refusing_our_certificate_is_119(pki: Pki) -> None:
    with fake_endpoint(pki, answer(StringReply("x")), trust="stranger.pem") as (port, seen):  # type: ignore[arg-type]
        result = run(["info", *pki.remote_args(port)])
    assert result.exit_code == 119
    assert result.stdout.startswith("albatross-client: [ERROR] local authentication failure ")
    assert seen == []


#: A day far from any day this suite runs on: the clock handed to alba must decide.
FAR = dt.datetime(2031, 5, 17, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(("seconds_after_expiry", "code"), [(-60, 0), (-1, 0), (1, 120), (60, 120)])
def test_the_server_certificate_is_judged_by_the_clock_handed_in(
    tmp_path: Path, seconds_after_expiry: int, code: int
) -> None:
    """alba signs its leaf and checks the server at its clock's time, not today's.

    The notAfter second itself is left out: OpenSSL 3.0 counts it as expired, newer
    releases (cryptography's bundled one) as valid (RFC 5280 says valid).
    """
    pki = Pki(tmp_path, now=FAR)
    server = x509.load_pem_x509_certificate(Path(pki.path("server.pem")).read_bytes())
    when = server.not_valid_after_utc + dt.timedelta(seconds=seconds_after_expiry)
    with fake_endpoint(pki, answer(StringReply("ok")), now=when) as (port, seen):  # type: ignore[arg-type]
        result = CliRunner().invoke(
            alba, ["destroy", "x", *pki.remote_args(port)], prog_name=PROG, obj=fixed_clock(when)
        )
    assert result.exit_code == code, result.output
    if code:
        assert result.stdout.startswith("albatross-client: [ERROR] remote authentication failure")
        assert "certificate has expired" in result.stdout
        assert seen == []
    else:
        assert result.stdout == "host [unikernel: :x]: success: ok\n"


@pytest.mark.parametrize(
    ("server_name", "code"), [("albatross.test", 0), ("127.0.0.1", 0), ("evil.test", 120)]
)
def test_server_name_checked_against_san(pki: Pki, server_name: str, code: int) -> None:
    with fake_endpoint(pki, answer(StringReply("ok"))) as (port, _):  # type: ignore[arg-type]
        result = run(["destroy", "x", "--server-name", server_name, *pki.remote_args(port)])
    assert result.exit_code == code, result.output
    if code:
        assert result.stdout == (
            "albatross-client: [ERROR] remote authentication failure: the server certificate is "
            "not for evil.test\n"
        )


def test_connect_failure_is_122(pki: Pki) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    result = run(["info", *pki.remote_args(port)])
    assert result.exit_code == 122
    assert result.stdout.startswith("albatross-client: [ERROR] connect failed with ")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mem", "128"], "128 MB memory assigned to unikernel exceeds policy (64MB)"),
        (["--cpu", "1"], "the CPUids 1 requested by the unikernel are not allowed by policy"),
    ],
)
def test_client_side_policy_refusal(pki: Pki, extra: list[str], message: str) -> None:
    with fake_endpoint(pki, answer(StringReply("created unikernel"))) as (port, seen):  # type: ignore[arg-type]
        result = run(["create", "a3", str(TICKER), *extra, *pki.remote_args(port, "alice")])
    assert result.exit_code == 124
    assert result.stdout == (
        f"albatross-client: [ERROR] couldn't generate certificate chain: {message}\n"
    )
    assert seen == []


def test_client_side_bridge_refusal_case_059(pki: Pki) -> None:
    result = run(["create", "a4", str(NET), "--net=service0:other",
                  *pki.remote_args(9, "alice")])  # fmt: skip
    assert result.exit_code == 124
    assert result.stdout == (CASES / "059-alice-create-bridge" / "stdout.txt").read_text()


def test_manifest_mismatch_case_044(pki: Pki) -> None:
    result = run(["create", "nettest", str(NET), "--net=service:service", *pki.remote_args(9)])
    assert result.exit_code == 124
    assert result.stdout == ""
    assert result.stderr == (CASES / "044-create-net-wrong-devname" / "stderr.txt").read_text()


def test_not_an_elf_case_012(pki: Pki) -> None:
    garbage = CASES / "012-create-image-invalid" / "garbage.bin"
    result = run(["create", "bad", str(garbage), *pki.remote_args(9)])
    assert result.exit_code == 124
    assert result.stderr == "albatross-client: error during ELF parsing\n"


def test_non_empty_path(pki: Pki) -> None:
    result = run(["destroy", "alice:a1", *pki.remote_args(9)])
    assert result.exit_code == 124
    assert result.stderr == "albatross-client: non-empty path\n"


def test_destinations_are_exclusive(pki: Pki) -> None:
    result = run(["info", "--csr", "--socket", "x"])
    assert result.exit_code == 124
    assert result.stderr == (
        "albatross-client: The options --csr, --destination, and --socket are mutually\n"
        "                  exclusive\n"
    )


def test_usage_error_is_124() -> None:
    result = run(["create", "onlyname"])
    assert result.exit_code == 124
    assert "Missing argument 'IMAGE'" in result.stderr


def test_print_chain_case_086(pki: Pki) -> None:
    result = run(["info", "--destination", "-", "--ca", pki.path("alice.pem"),
                  "--ca-key", pki.path("alice.key"),
                  "--server-ca", pki.path("cacert.pem")])  # fmt: skip
    assert result.exit_code == 121
    shape = [line if line.startswith("-----") or line.endswith(":") or not line else "B64"
             for line in result.stdout.split("\n")]  # fmt: skip
    captured = (CASES / "086-dest-dash-print-chain" / "stdout.txt").read_text().split("\n")
    expected = [line if line.startswith("-----") or line.endswith(":") or not line else "B64"
                for line in captured]  # fmt: skip

    def squash(lines: list[str]) -> list[str]:
        return [x for i, x in enumerate(lines) if not (x == "B64" and i and lines[i - 1] == "B64")]

    assert squash(shape) == squash(expected)


def test_policy_root_path_sends_empty_cn(pki: Pki) -> None:
    with fake_endpoint(pki, answer()) as (port, seen):  # type: ignore[arg-type]
        result = run(["policy", *pki.remote_args(port)])
    assert [(s.cn, s.command) for s in seen] == [("", PolicyInfo())]
    assert result.exit_code == 121  # albatross: silently 0 (case 002); we say why


def test_console_follow_until_close(pki: Pki) -> None:
    import datetime as dt

    ts = dt.datetime(2026, 11, 27, 18, 5, 15, tzinfo=dt.UTC)
    responder = answer(StringReply("subscribed"), ConsoleData(ts, 'say "hi" \\ ok'))
    with fake_endpoint(pki, responder) as (port, seen):  # type: ignore[arg-type]
        result = run(["console", "hello", "--count", "3", *pki.remote_args(port)])
    assert result.exit_code == 0
    assert result.stdout == (
        "host [unikernel: :hello]: success: subscribed\n"
        'console 2026-11-27T18:05:15-00:00: say \\"hi\\" \\\\ ok\n'
    )
    assert seen[0].command == ConsoleSubscribe(count=3)


def test_console_interrupted_exits_cleanly(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("client.options.trio.run", interrupted)
    result = run(["console", "hello", *pki.remote_args(9)])
    assert result.exit_code == 0
    assert result.stderr == "albatross-client: interrupted, stopped following\n"


def test_set_block_streams_compressed_data(pki: Pki) -> None:
    data_file = CASES / "033-block-set" / "data-64k.bin"
    with fake_endpoint(pki, answer(StringReply("set block device"))) as (port, seen):  # type: ignore[arg-type]
        result = run(["set-block", "disk1", str(data_file), *pki.remote_args(port)])
    assert result.exit_code == 0, result.output
    assert result.stdout == "host [unikernel: :disk1]: success: set block device\n"
    assert seen[0].command == BlockSet(compressed=True)
    assert len(seen[0].data[-1]) == 4  # the Adler-32 travels alone, as albatross sends it
    assert zlib.decompress(b"".join(seen[0].data)) == data_file.read_bytes()


def test_set_block_uncompressed_chunks(pki: Pki) -> None:
    data_file = CASES / "033-block-set" / "data-64k.bin"
    with fake_endpoint(pki, answer(StringReply("set block device"))) as (port, seen):  # type: ignore[arg-type]
        result = run(["set-block", "disk1", str(data_file), "--compression-level", "0",
                      *pki.remote_args(port)])  # fmt: skip
    assert result.exit_code == 0
    assert [len(c) for c in seen[0].data] == [4096] * 16
    assert seen[0].command == BlockSet(compressed=False)


def test_create_block_with_data_uses_two_connections(pki: Pki) -> None:
    data_file = CASES / "030-block-create-data" / "data-100k.bin"

    def responder(seen: Seen) -> list[bytes]:
        text = "set block device" if isinstance(seen.command, BlockSet) else "added block device"
        return [reply(Name.parse(":disk2"), StringReply(text))]

    with fake_endpoint(pki, responder) as (port, seen):
        result = run(["create-block", "disk2", "1", "--data", str(data_file),
                      *pki.remote_args(port)])  # fmt: skip
    assert result.exit_code == 0
    assert result.stdout == (CASES / "030-block-create-data" / "stdout.txt").read_text()
    assert zlib.decompress(b"".join(seen[1].data)) == data_file.read_bytes()


def test_create_block_data_too_big(pki: Pki, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (1 << 20 + 1))
    result = run(["create-block", "d", "1", "--data", str(big), *pki.remote_args(9)])
    assert result.exit_code == 124
    assert result.stderr == "albatross-client: data exceeds size\n"


def test_get_writes_image(pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = TICKER.read_bytes()
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    responder = answer(UnikernelImage(True, zlib.compress(image)))
    with fake_endpoint(pki, responder) as (port, _):  # type: ignore[arg-type]
        result = run(["get", "tick1", *pki.remote_args(port)])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("host [unikernel: :tick1]: image (compression true) ")
    written = Path(lines[1].removeprefix("dumped image to "))
    assert written.parent == tmp_path and written.name.startswith(":tick1.")
    assert written.read_bytes() == image


def test_dump_block_cut_short_is_an_error(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    responder = answer(BlockDeviceImage(False), BlockData(b"abc"))
    with fake_endpoint(pki, responder) as (port, _):  # type: ignore[arg-type]
        result = run(["dump-block", "disk1", *pki.remote_args(port)])
    assert result.exit_code == 121
    assert "the block dump ended early" in result.stdout


def test_dump_block_writes_data(pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    z = zlib.compress(b"block!" * 1000)
    responder = answer(BlockDeviceImage(True), BlockData(z[:10]), BlockData(z[10:]),
                       BlockData(None))  # fmt: skip
    with fake_endpoint(pki, responder) as (port, _):  # type: ignore[arg-type]
        result = run(["dump-block", "disk1", *pki.remote_args(port)])
    assert result.exit_code == 0
    first, second = result.stdout.splitlines()
    assert first == "host [unikernel: :disk1]: block device compressed true"
    assert Path(second.removeprefix("dumped to ")).read_bytes() == b"block!" * 1000


def test_csr_mode_writes_key_and_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography import x509

    from core.certs import albatross_command

    monkeypatch.chdir(tmp_path)
    result = run(["destroy", "a2", "--csr"])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert os.stat(tmp_path / "a2.key").st_mode & 0o777 == 0o400
    csr = x509.load_pem_x509_csr((tmp_path / "a2.req").read_bytes())
    assert albatross_command(csr) == UnikernelDestroy()
    again = run(["destroy", "a2", "--csr"])  # the key is reused, the request rewritten
    assert again.exit_code == 0


def test_add_policy_csr_warns_without_bridges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run(["add-policy", "Dave", "1", "--mem", "32", "--csr"])
    assert result.exit_code == 0
    assert result.stdout == (CASES / "073-dave-upper-csr" / "stdout.txt").read_text()
    assert (tmp_path / "dave.req").exists()


def test_unusable_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run(["add-policy", "x", "1", "--mem", "16", "--csr"])
    assert result.exit_code == 124
    assert result.stdout == (
        "albatross-client: [ERROR] Unusable policy with memory 16 MB <= 16 MB\n"
    )


def test_json_failure_and_error_lines(pki: Pki) -> None:
    with fake_endpoint(pki, answer(Failure("destroy: not found"))) as (port, _):  # type: ignore[arg-type]
        failed = run(["destroy", "ghost", "--json", *pki.remote_args(port)])
    assert failed.exit_code == 117
    assert failed.stdout == (
        '{"exit_code":117,"message":"destroy: not found","name":":ghost","record":"error",'
        '"reply_type":"Failure","schema":1,"source":"daemon"}\n'
    )
    refused = run(["create", "a", str(TICKER), "--mem", "128", "--json",
                   *pki.remote_args(9, "alice")])  # fmt: skip
    assert refused.exit_code == 124
    assert refused.stdout == (
        '{"exit_code":124,"message":"couldn\'t generate certificate chain: 128 MB memory '
        'assigned to unikernel exceeds policy (64MB)","name":null,"record":"error",'
        '"reply_type":null,"schema":1,"source":"client"}\n'
    )


@pytest.mark.parametrize(
    ("since", "expected"),
    [("2023-03-12T23:42:15Z", "2023-03-12T23:42:15+00:00"),
     ("2023-03-12", "2023-03-12T00:00:00+00:00"),
     ("2023-03-12T23:42:15+02:00", "2023-03-12T21:42:15+00:00")],
)  # fmt: skip
def test_console_since(pki: Pki, since: str, expected: str) -> None:
    import datetime as dt

    with fake_endpoint(pki, answer(StringReply("subscribed"))) as (port, seen):  # type: ignore[arg-type]
        result = run(["console", "t", "--since", since, *pki.remote_args(port)])
    assert result.exit_code == 0
    got = seen[0].command
    assert isinstance(got, ConsoleSubscribe) and got.since is not None
    assert got.since.astimezone(dt.UTC).isoformat() == expected


def test_console_since_invalid() -> None:
    result = run(["console", "t", "--since", "yesterday"])
    assert result.exit_code == 124
    assert "couldn't parse timestamp" in result.stderr


def test_policy_warnings_come_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run(["add-policy", "x", "0", "--cpu", "0", "--cpu", "0", "--csr"])
    assert result.exit_code == 124
    assert result.stdout == (
        "albatross-client: [WARNING] CPUids is not a set\n"
        "albatross-client: [ERROR] Unusable policy with no unikernels\n"
    )


def test_hostname_destination_with_sni(pki: Pki) -> None:
    with fake_endpoint(pki, answer(StringReply("ok"))) as (port, seen):  # type: ignore[arg-type]
        args = pki.remote_args(port)
        args[1] = f"localhost:{port}"
        result = run(["destroy", "x", "--server-name", "albatross.test", *args])
    assert (result.exit_code, result.stdout) == (0, "host [unikernel: :x]: success: ok\n")
    assert len(seen) == 1


def test_missing_and_oversized_image(pki: Pki, tmp_path: Path) -> None:
    missing = run(["create", "x", str(tmp_path / "nope.hvt"), *pki.remote_args(9)])
    assert missing.exit_code == 124
    assert " ".join(missing.stderr.split()) == (  # wrapped like cmdliner, path-dependent
        f"albatross-client: UNIKERNEL-IMAGE argument: no {tmp_path / 'nope.hvt'} file or directory"
    )
    big = tmp_path / "big.hvt"
    with big.open("wb") as fh:
        fh.truncate(64 * 1024 * 1024 + 1)
    result = run(["create", "x", str(big), *pki.remote_args(9)])
    assert result.exit_code == 124
    assert "is larger than 64 MiB" in result.stderr


def test_info_verbose_shows_argv(pki: Pki) -> None:
    import datetime as dt

    from core.wire import Quit, Typ, UnikernelInfoRecord

    record = UnikernelInfoRecord(
        typ=Typ.SOLO5, fail_behaviour=Quit(), cpuids=frozenset({0}), memory=16,
        digest=b"\x01" * 32, started=dt.datetime(2026, 11, 27, 18, 5, 26, tzinfo=dt.UTC),
        argv=("--foo=1", "bar"),
    )  # fmt: skip
    listing = UnikernelInfoList(((Name.parse(":tick1"), record),))
    with fake_endpoint(pki, answer(listing)) as (port, _):  # type: ignore[arg-type]
        plain = run(["info", *pki.remote_args(port)])
        verbose = run(["info", "-v", "-v", *pki.remote_args(port)])
    assert "argv" not in plain.stdout
    assert plain.stdout.endswith("#cpus 1 linux_boot_partition not specified\n")
    assert verbose.stdout.endswith("#cpus 1 linux_boot_partition not specified argv --foo=1 bar\n")
