"""The one output model: JSON records (schema 1), tables, and the text left untouched."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from client.cli import alba
from client.errors import CommunicationFailed, RemoteCommandFailed
from client.output import error_record, exception_record, format_table, table
from client.session import Printer
from core.jsonout import SCHEMA, json_line, serial_text, to_json
from core.wire import (
    BlockDeviceEntry,
    BlockDeviceList,
    ConsoleData,
    Failure,
    Message,
    Name,
    Policy,
    PolicyList,
    StringReply,
    Typ,
    UnikernelImage,
    UnikernelInfoList,
)
from core.wire.messages import (
    BlockInfoRecord,
    Header,
    NetInfoRecord,
    Restart,
    UnikernelInfoRecord,
)
from tests.client.stack import Stack
from tests.client.test_e2e import root_args, run

STARTED = dt.datetime(2026, 3, 1, 10, 0, tzinfo=dt.UTC)
RECORD = UnikernelInfoRecord(
    typ=Typ.SOLO5,
    fail_behaviour=Restart(frozenset({1, 2})),
    cpuids=frozenset({0}),
    memory=32,
    digest=bytes(range(32)),
    blocks=frozenset({BlockInfoRecord("storage", "alice.data", 512, 10)}),
    bridges=frozenset({NetInfoRecord("service", "br0", bytes.fromhex("008041b8a0fd"))}),
    started=STARTED,
)
INFO = Message(
    Header(Name.parse("alice:web")), UnikernelInfoList(((Name.parse("alice:web"), RECORD),))
)
POLICIES = Message(
    Header(Name.parse(":")),
    PolicyList(
        (
            (Name.parse("alice:"), Policy(2, frozenset({0, 1}), 256, 100, frozenset({"br0"}))),
            (Name.parse("bob:"), Policy(1, frozenset({1}), 64)),
        )
    ),
)
BLOCKS = Message(
    Header(Name.parse(":")),
    BlockDeviceList(
        (
            BlockDeviceEntry(Name.parse("alice:data"), 10, True),
            BlockDeviceEntry(Name.parse("spare"), 2048, False),
        )
    ),
)


def printed(msg: Message, output_format: str) -> str:
    out: list[str] = []
    Printer("albatross-client", out.append, out.append, output_format).message(msg)
    return "".join(out)


def test_info_record_is_an_object_with_named_fields_and_text_macs() -> None:
    assert printed(INFO, "json") == (
        '{"name":"alice:web","record":"reply","reply":{"type":"UnikernelInfoList",'
        '"unikernels":[{"argv":null,"blocks":[{"device":"alice.data","name":"storage",'
        '"sector_size":512,"size":10,"type":"BlockInfoRecord"}],'
        '"bridges":[{"bridge":"br0","mac":"00:80:41:b8:a0:fd","name":"service",'
        '"type":"NetInfoRecord"}],"cpuids":[0],'
        '"digest":"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",'
        '"fail_behaviour":{"exit_codes":[1,2],"type":"Restart"},"linux_boot_partition":null,'
        '"memory":32,"name":"alice:web","numcpus":1,"started":"2026-03-01T10:00:00+00:00",'
        '"startup":null,"typ":"solo5","type":"UnikernelInfoRecord"}],"variant":"current"},'
        '"schema":1}\n'
    )


def test_the_text_shows_the_same_mac() -> None:
    assert "(mac 00:80:41:b8:a0:fd)" in printed(INFO, "text")


def test_policy_pairs_become_named_objects() -> None:
    line = json.loads(printed(POLICIES, "json"))
    assert line["reply"]["policies"] == [
        {"block": 100, "bridges": ["br0"], "cpuids": [0, 1], "memory": 256,
         "name": "alice:", "unikernels": 2},
        {"block": None, "bridges": [], "cpuids": [1], "memory": 64, "name": "bob:",
         "unikernels": 1},
    ]  # fmt: skip


def test_an_image_is_summarised_not_inlined() -> None:
    image = b"\x7fELF" + bytes(1000)
    msg = Message(Header(Name.parse("t")), UnikernelImage(False, image))
    assert json.loads(printed(msg, "json"))["reply"]["image"] == {
        "length": 1004,
        "sha256": "54858a47fe7942e9f2eab722bea5302b7eda8f8e9ab007562f5c25980113eeab",
    }


def test_daemon_refusal_and_client_error_share_one_shape() -> None:
    refusal = json.loads(printed(Message(Header(Name.parse("g")), Failure("not found")), "json"))
    client = error_record("connect failed", 123)
    assert set(refusal) == set(client)
    assert (refusal["source"], refusal["exit_code"], refusal["reply_type"]) == (
        "daemon",
        117,
        "Failure",
    )
    assert (client["source"], client["exit_code"], client["reply_type"]) == ("client", 123, None)
    assert refusal["schema"] == client["schema"] == SCHEMA == 1


def test_an_already_printed_refusal_gets_no_second_error_record() -> None:
    assert exception_record(RemoteCommandFailed("x", log="none"), 117) is None
    assert exception_record(CommunicationFailed("printed", log="none"), 121) == error_record(
        "printed", 121
    )


def test_info_table() -> None:
    # The start time as the text prints it (albatross's RFC 3339 with -00:00 for UTC).
    assert printed(INFO, "table") == (
        "NAME       TYPE   MEMORY-MB  CPUS  STARTED                    BLOCKS               "
        "BRIDGES\n"
        "alice:web  solo5  32         0     2026-03-01T10:00:00-00:00  storage->alice.data  "
        "service->br0@00:80:41:b8:a0:fd\n"
    )


def test_policy_and_block_tables() -> None:
    assert printed(POLICIES, "table") == (
        "NAME    UNIKERNELS  MEMORY-MB  CPUS  BLOCK-MB  BRIDGES\n"
        "alice:  2           256        0,1   100       br0\n"
        "bob:    1           64         1     -         -\n"
    )
    assert printed(BLOCKS, "table") == (
        "NAME        SIZE-MB  ACTIVE\nalice:data  10       true\n:spare      2048     false\n"
    )


def test_table_falls_back_to_the_text_for_a_non_list() -> None:
    msg = Message(Header(Name.parse("t")), StringReply("destroyed unikernel"))
    assert format_table(msg) is None
    assert (
        printed(msg, "table")
        == printed(msg, "text")
        == ("host [unikernel: :t]: success: destroyed unikernel\n")
    )


def test_table_helper_aligns_and_trims() -> None:
    assert table(["A", "LONGER", "Z"], [["xx", "y", ""]]) == "A   LONGER  Z\nxx  y\n"


@pytest.mark.parametrize(
    ("serial", "text"),
    [(0x3D94806933CFF291285F, "3d94806933cff291285f"),
     (0x9F2A52EE9A854B443973, "009f2a52ee9a854b443973"),
     (1, "01")],
)  # fmt: skip
def test_serial_as_the_albatross_database_writes_it(serial: int, text: str) -> None:
    # behaviour.md: `009f2a52ee9a854b443973 server`, `3d94806933cff291285f alice` (case 050)
    assert serial_text(serial) == text


def test_json_line_is_compact_and_sorted() -> None:
    assert json_line({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}\n'
    assert to_json(frozenset({3, 1})) == [1, 3]


def test_format_json_is_the_same_as_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALBATROSS_REMOTES", str(tmp_path / "remotes.toml"))
    (tmp_path / "remotes.toml").write_text(
        '[remotes.home]\ndestination = "host.example:1025"\nca = "ca.pem"\nca_key = "ca.key"\n'
        'server_ca = "cacert.pem"\n'
    )
    runner = CliRunner()
    as_json = runner.invoke(alba, ["remote", "list", "--json"])
    as_format = runner.invoke(alba, ["remote", "list", "--format", "json"])
    assert (
        as_json.stdout
        == as_format.stdout
        == (
            '{"ca":"ca.pem","ca_key":"ca.key","destination":"host.example:1025",'
            '"expires":{"error":"CA certificate ca.pem does not exist"},"expires_soon":false,'
            '"key_type":null,"name":"home","record":"remote","schema":1,"server_ca":"cacert.pem",'
            '"server_name":null}\n'
        )
    )
    as_table = runner.invoke(alba, ["remote", "list", "--format", "table"])
    assert as_table.stdout == (
        "NAME  DESTINATION        SERVER-NAME  KEY-TYPE  EXPIRY\n"
        "home  host.example:1025  -            -         "
        "chain unreadable: CA certificate ca.pem does not exist\n"
    )
    bad = runner.invoke(alba, ["remote", "list", "--format", "yaml"])
    assert bad.exit_code != 0


def test_console_line_is_a_data_record_and_logs_are_log_records() -> None:
    line = Message(Header(Name.parse("t")), ConsoleData(STARTED, "hello"))
    assert printed(line, "json") == (
        '{"name":":t","record":"data","reply":{"line":"hello",'
        '"timestamp":"2026-03-01T10:00:00+00:00","type":"ConsoleData"},"schema":1}\n'
    )
    out: list[str] = []
    printer = Printer("albatross-client", out.append, out.append, "json")
    printer.app("dumped to /tmp/x", file="/tmp/x")
    printer.warn("Unexpected block dump data received")
    assert out == [
        '{"file":"/tmp/x","level":"info","message":"dumped to /tmp/x","record":"log","schema":1}\n',
        '{"level":"warning","message":"Unexpected block dump data received","record":"log",'
        '"schema":1}\n',
    ]


def test_block_table_through_the_endpoint(stack: Stack) -> None:
    # Rows in the daemon's order, as the text prints them.
    assert run(["create-block", "d1", "1", *root_args(stack)]).exit_code == 0
    assert run(["create-block", "data2", "12", *root_args(stack)]).exit_code == 0
    shown = run(["block", "--format", "table", *root_args(stack)])
    assert (shown.exit_code, shown.stdout) == (
        0,
        "NAME    SIZE-MB  ACTIVE\n:data2  12       false\n:d1     1        false\n",
    )
    as_json = run(["block", "--json", *root_args(stack)])
    assert json.loads(as_json.stdout)["reply"]["devices"] == [
        {"active": False, "name": ":data2", "size": 12, "type": "BlockDeviceEntry"},
        {"active": False, "name": ":d1", "size": 1, "type": "BlockDeviceEntry"},
    ]
