"""albatross's state file: the codec, and inspect-dump / extract-dump on it."""

from __future__ import annotations

import contextlib
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from client.cli import alba
from client.statefile import State, _both, decode_state, encode_state
from tests.vectors import CASES
from tlsendpoint.errors import ParseError
from tlsendpoint.wire import BlockDevice, Name, NetIf, Policy, Restart, UnikernelConfig
from tlsendpoint.wire.der import Explicit
from tlsendpoint.wire.grammar import UNIKERNEL_CONFIG_V4

IMAGE = (CASES / "003-create-hello-minimal" / "fake_hello.hvt").read_bytes()
CONFIG = UnikernelConfig(
    image=zlib.compress(IMAGE), memory=16, compressed=True, argv=("--hello=hi", "x"),
    blocks=frozenset({BlockDevice("storage", "disk1", 4096)}),
    bridges=frozenset({NetIf("service0", "service", bytes.fromhex("008041aabbcc"))}),
    fail_behaviour=Restart(frozenset({0, 7})), startup=3,
)  # fmt: skip
POLICY = Policy(2, frozenset({0}), 64, 100, frozenset({"service"}))
STATE = State(((Name.parse("alice:hello"), CONFIG),), ((Name.parse("alice:"), POLICY),))


def test_round_trip_current() -> None:
    data = encode_state(STATE)
    assert data[0] == 0xA6  # [6] uk-and-policy, the alternative albatross writes
    assert decode_state(data) == STATE


def test_reads_v4_alternative() -> None:
    plain = UnikernelConfig(image=IMAGE, memory=32, startup=None)
    old = State(((Name.parse(":a"), plain),), ())
    data = Explicit(5, _both(UNIKERNEL_CONFIG_V4, "state v4")).encode(old)
    assert data[0] == 0xA5
    assert decode_state(data) == old


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "state file: empty"),
        (b"\xa0\x02\x30\x00", "unikernel-OLD1): not supported"),
        (b"\x30\x00", "state: unexpected tag 0x30"),
    ],
)
def test_refusals(data: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message.replace("(", r"\(").replace(")", r"\)")):
        decode_state(data)


@given(st.binary(max_size=300))
def test_garbage_gives_only_parse_errors(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        decode_state(b"\xa6" + data)


def _invoke(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(alba, args, prog_name="albatross-client")
    return result.exit_code, result.stdout, result.stderr


def test_inspect_dump(tmp_path: Path) -> None:
    (tmp_path / "state").write_bytes(encode_state(STATE))
    code, out, _ = _invoke(["inspect-dump", "--dbdir", str(tmp_path)])
    assert code == 0
    assert out == (
        "parsed 1 unikernels:\n"
        f"[unikernel: alice:hello]: typ solo5 compression true image {len(CONFIG.image)} bytes\n"
        "fail behaviour restart 0, 7 startup at 3 add_name true CPUids 0 16 MB memory\n"
        "block devices storage -> disk1, sector-size: 4096\n"
        "bridge service0 -> service@00:80:41:aa:bb:cc #cpus 1 linux_boot not specified\n"
        "parsed 1 policies:\n"
        "[unikernel: alice:]: policy: 2 unikernels 0 CPUids 64 MB memory 100 MB block, "
        "bridges: service\n"
    )


def test_extract_dump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "saved").write_bytes(encode_state(STATE))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    code, out, _ = _invoke(["extract-dump", "alice:hello", "--file", str(tmp_path / "saved")])
    assert code == 0
    first, *config = out.splitlines()
    written = Path(first.removeprefix("dumped image to "))
    assert written.name.startswith("alice:hello.")
    assert written.read_bytes() == IMAGE
    assert config[-1].endswith("argv --hello=hi x")
    missing = _invoke(["extract-dump", "ghost", "--file", str(tmp_path / "saved")])
    assert missing[:2] == (124, "albatross-client: [ERROR] unikernel not found\n")


def test_dump_file_errors(tmp_path: Path) -> None:
    assert _invoke(["inspect-dump", "--dbdir", str(tmp_path)])[:2] == (
        124, "albatross-client: [ERROR] dump file not found\n")  # fmt: skip
    (tmp_path / "state").write_bytes(b"\x30\x00")
    code, out, _ = _invoke(["inspect-dump", "--dbdir", str(tmp_path)])
    assert code == 124
    assert out.startswith("albatross-client: [ERROR] couldn't parse dump file: state file:")
