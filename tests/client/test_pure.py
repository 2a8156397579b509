"""The client's pure parts, table-driven: argument parsers, destinations, manifests,
the Format engine and the albatross printers."""

from __future__ import annotations

import contextlib
import datetime as dt
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from client.cli import alba, term_error
from client.commands import (
    UnikernelOptions,
    build_create,
    leaf_cn,
    parse_block,
    parse_name,
    parse_net,
    parse_path,
)
from client.destination import Local, parse_host_port
from client.manifest import Device, devices_match, read_manifest
from client.output import escaped, format_message, rfc3339
from client.session import data_chunks
from core.errors import ParseError, UsageError
from core.ocaml_format import Formatter
from core.routing import ReplyMode, route
from core.wire import (
    BlockDevice,
    BlockDump,
    BlockInfoRecord,
    Command,
    ConsoleListInactive,
    ConsoleSubscribe,
    Header,
    Message,
    Name,
    NetIf,
    NetInfoRecord,
    PolicyInfo,
    Quit,
    StatsRemove,
    StatsSubscribe,
    Typ,
    UnikernelDestroy,
    UnikernelInfo,
    UnikernelInfoList,
    UnikernelInfoRecord,
)
from tests.vectors import CASES

TICKER = (CASES / "005-create-ticker-args" / "fake_ticker.hvt").read_bytes()
BLK = (CASES / "038-create-with-block" / "fake_blk.hvt").read_bytes()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("storage", BlockDevice("storage", None, None)),
        ("storage:disk1", BlockDevice("storage", "disk1", None)),
        ("storage:disk1@4096", BlockDevice("storage", "disk1", 4096)),
        ("storage@512", BlockDevice("storage", None, 512)),
    ],
)
def test_parse_block(text: str, expected: BlockDevice) -> None:
    assert parse_block(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a@1000", "sector size must be a power of two greater than or equal 512"),
        ("a@256", "sector size must be a power of two greater than or equal 512"),
        ("a@x", "sector size must be an integer"),
        ("a@1@2", "format is 'name[@sector-size]' or 'name:block-device-name[@sector-size]'"),
        ("a:b:c", "block 'a:b:c': format is 'name' or 'name:device-name'"),
    ],
)
def test_parse_block_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_block(text)
    assert err.value.message == message


def test_parse_net() -> None:
    assert parse_net("service") == NetIf("service", None, None)
    assert parse_net("service0:service@00:80:41:aa:bb:cc") == NetIf(
        "service0", "service", bytes.fromhex("008041aabbcc")
    )
    with pytest.raises(UsageError, match="MAC address 'zz'"):
        parse_net("a@zz")


@pytest.mark.parametrize(
    ("text", "wire"),
    [(":", ":"), ("tick1", ":tick1"), ("Tick1", ":tick1"), ("alice:a1", "alice:a1"),
     ("alice:", "alice:"), (":hello", ":hello")],
)  # fmt: skip
def test_parse_name(text: str, wire: str) -> None:
    assert str(parse_name(text)) == wire


def test_parse_path_and_bad_label() -> None:
    assert str(parse_path("alice:bob")) == "alice:bob:"
    assert str(parse_path(":")) == ":"
    with pytest.raises(UsageError, match="invalid label"):
        parse_name("-bad")


@pytest.mark.parametrize(
    ("command", "name", "cn"),
    [(UnikernelInfo(), ":", "."), (UnikernelDestroy(), "tick1", "tick1"),
     (PolicyInfo(), ":", ""), (PolicyInfo(), "alice:", "alice")],
)  # fmt: skip
def test_leaf_cn(command: object, name: str, cn: str) -> None:
    assert leaf_cn(command, parse_path(name) if name.endswith(":") else parse_name(name)) == cn  # type: ignore[arg-type]


def test_leaf_cn_non_empty_path() -> None:
    with pytest.raises(UsageError, match="non-empty path"):
        leaf_cn(UnikernelDestroy(), parse_name("alice:a1"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("h", ("h", 1025)), ("h:99", ("h", 99)), ("10.0.0.1", ("10.0.0.1", 1025)),
     ("[::1]:7", ("::1", 7)), ("[::1]", ("::1", 1025)), ("-", ("-", 1025))],
)  # fmt: skip
def test_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize(
    ("text", "message"), [("h:x", "failed to parse port"), ("", "empty host"), ("h:0", "port 0")]
)
def test_host_port_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_host_port(text)


@pytest.mark.parametrize(
    ("command", "daemon", "mode"),
    [
        (UnikernelInfo(), "vmmd", ReplyMode.SINGLE),
        (BlockDump(9), "vmmd", ReplyMode.DUMP),
        (ConsoleSubscribe(count=1), "console", ReplyMode.READ),
        (ConsoleListInactive(), "console", ReplyMode.SINGLE),
        (StatsSubscribe(), "stat", ReplyMode.READ),
        (StatsRemove(), "stat", ReplyMode.SINGLE),
    ],
)
def test_local_socket_and_reply_mode_from_the_routing_table(
    tmp_path: Path, command: Command, daemon: str, mode: ReplyMode
) -> None:
    target = route(command)
    assert Local(None, tmp_path).socket_path(target.socket) == f"{tmp_path}/util/{daemon}.sock"
    assert Local("/run/x.sock", tmp_path).socket_path(target.socket) == "/run/x.sock"
    assert target.mode is mode


def test_manifest() -> None:
    assert read_manifest(BLK) == [Device("block", "storage")]
    assert read_manifest(TICKER) == []
    for bad in (b"", b"garbage", TICKER[:100], b"\x7fELF" + bytes(60)):
        with pytest.raises(ParseError):
            read_manifest(bad)
    # A section header table pointing past the end of the file (albatross reads the
    # notes through the section headers, not the program headers).
    broken = bytearray(TICKER)
    struct.pack_into("<Q", broken, 0x28, len(broken) + 1000)
    with pytest.raises(ParseError, match="error during ELF parsing"):
        read_manifest(bytes(broken))
    with pytest.raises(UsageError, match=r"block device\(s\) does not match"):
        devices_match([Device("block", "storage")], [], ["other"])


def test_create_checks() -> None:
    with pytest.raises(UsageError, match="Bridge names must be a set"):
        build_create(UnikernelOptions(nets=(NetIf("a"), NetIf("a"))), TICKER, 0, False)
    with pytest.raises(UsageError, match="CPUids may not be empty"):
        build_create(UnikernelOptions(cpuids=()), TICKER, 0, False)
    made = build_create(UnikernelOptions(blocks=(BlockDevice("storage"),)), BLK, 0, True)
    assert made.force and made.config.image == BLK and not made.config.compressed


def test_data_chunks() -> None:
    data = [b"a" * 5000, b"b" * 5000]
    assert [len(c) for c in data_chunks(data, 0)] == [4096, 904, 4096, 904]
    chunks = list(data_chunks(data, 9))
    assert len(chunks[-1]) == 4
    import zlib

    assert zlib.decompress(b"".join(chunks)) == b"a" * 5000 + b"b" * 5000


def test_escaped_and_time() -> None:
    assert escaped('a"b\\c\td\x01é') == 'a\\"b\\\\c\\td\\001\\195\\169'
    assert rfc3339(dt.datetime(2026, 1, 2, 3, 4, 5, 999, tzinfo=dt.UTC)) == (
        "2026-01-02T03:04:05-00:00"
    )


def test_formatter_breaks_like_ocaml_format() -> None:
    f = Formatter(margin=20)
    f.text("abc").open_box()
    for word in ["one", "two", "three", "four", "five"]:
        f.brk().text(word)
    f.close_box().newline()
    assert f.getvalue() == "abc one two three\n   four five\n"  # indented to the box
    wrapped = term_error("prog", " ".join(["word"] * 30)).splitlines()
    assert len(wrapped) == 3
    assert all(len(line) <= 78 for line in wrapped)
    assert len(wrapped[0]) + len(" word") > 78  # nothing more would have fitted
    assert all(line.startswith("      word") for line in wrapped[1:])  # under the first word
    assert " ".join(" ".join(wrapped).split()) == "prog: " + " ".join(["word"] * 30)


def test_help_topic() -> None:
    result = CliRunner().invoke(alba, ["help", "nope"], prog_name="albatross-client")
    assert result.exit_code == 124
    assert result.stdout.startswith("unknown command 'nope', available commands:\nadd-policy\n")


@given(st.binary(max_size=400))
def test_manifest_garbage_gives_only_parse_errors(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        read_manifest(b"\x7fELF\x02\x01" + data)


@given(st.integers(min_value=0, max_value=len(BLK) - 1), st.integers(min_value=0, max_value=255))
def test_manifest_mutations_give_only_parse_errors(position: int, value: int) -> None:
    mutated = bytearray(BLK)
    mutated[position] = value
    with contextlib.suppress(ParseError):
        read_manifest(bytes(mutated))


def test_info_prints_block_devices_and_bridges_in_wire_order() -> None:
    """DER sorts a SET by encoding, shorter entries first; albatross prints that order."""
    started = dt.datetime(2026, 11, 27, 18, 7, 36, tzinfo=dt.UTC)
    record = UnikernelInfoRecord(
        typ=Typ.SOLO5,
        fail_behaviour=Quit(),
        cpuids=frozenset({0}),
        memory=16,
        digest=bytes(32),
        blocks=frozenset(
            {BlockInfoRecord("aa", "disk1", 512, 1), BlockInfoRecord("b", "d", 512, 1)}
        ),
        bridges=frozenset(
            {NetInfoRecord("net0", "service", bytes(6)), NetInfoRecord("n", "b", bytes(6))}
        ),
        started=started,
    )
    text = format_message(
        Message(Header(Name.parse(":x")), UnikernelInfoList(((Name.parse(":x"), record),)))
    )
    flat = " ".join(text.split())
    assert (
        "block devices b -> d (sector-size: 512 bytes, size 1 MB), "
        "aa -> disk1 (sector-size: 512 bytes, size 1 MB)"
    ) in flat
    assert "bridge n -> b (mac 00:00:00:00:00:00), net0 -> service (mac 00:00:00:00:00:00)" in flat
