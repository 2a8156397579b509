"""ca.describe: albatross's command texts (src/vmm_commands.ml) and Format line breaking."""

from __future__ import annotations

import datetime as dt

import pytest

from ca.describe import command_text, describe_command, render
from core.wire import (
    BlockAdd,
    BlockAddOld,
    BlockDevice,
    BlockDump,
    BlockDumpOld,
    BlockInfo,
    BlockRemove,
    BlockSet,
    BlockSetOld,
    Command,
    ConsoleAdd,
    ConsoleListInactive,
    ConsoleSubscribe,
    NetIf,
    Policy,
    PolicyAdd,
    PolicyInfo,
    PolicyRemove,
    Restart,
    StatsAdd,
    StatsInitial,
    StatsRemove,
    StatsSubscribe,
    UnikernelArguments,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelGet,
    UnikernelInfo,
    UnikernelRestart,
)

CONFIG = UnikernelConfig(
    image=b"x" * 10,
    memory=16,
    cpuids=frozenset({0, 1}),
    compressed=True,
    fail_behaviour=Restart(frozenset({7, 0})),
    startup=3,
    blocks=frozenset({BlockDevice("storage", "disk1", 4096), BlockDevice("a")}),
    bridges=frozenset({NetIf("service", None, bytes.fromhex("008041aabbcc")), NetIf("b", "x")}),
)

TEXTS: list[tuple[Command, str]] = [
    (ConsoleAdd(3), "console add (max unikernels 3)"),
    (ConsoleSubscribe(count=20), "console subscribe number 20"),
    (
        ConsoleSubscribe(since=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)),
        "console subscribe since 2026-01-01T00:00:00-00:00",
    ),
    (ConsoleListInactive(), "console list inactive available ringbuffers"),
    (
        StatsAdd("vmm0", 42, (("service", "tap0"),)),
        "stats add: vmm device vmm0 pid 42 taps service: tap0",
    ),
    (StatsRemove(), "stat remove"),
    (StatsSubscribe(), "stat subscribe"),
    (StatsInitial(), "stat initial"),
    (UnikernelInfo(), "unikernel info"),
    (UnikernelDestroy(), "unikernel destroy"),
    (UnikernelGet(9), "unikernel get compress level 9"),
    (UnikernelRestart(), "unikernel restart"),
    (
        UnikernelRestart(UnikernelArguments(memory=32)),
        "unikernel restart fail behaviour quit startup at not specified add_name true CPUids 0 "
        "32 MB memory block devices  bridge  #cpus 1 linux_boot_partition not specified",
    ),
    (
        UnikernelCreate(CONFIG, force=True),
        "unikernel force create typ solo5 compression true image 10 bytes fail behaviour restart "
        "0, 7 startup at 3 add_name true CPUids 0, 1 16 MB memory block devices a -> a, "
        "storage -> disk1, sector-size: 4096 bridge b -> x, service -> service@00:80:41:aa:bb:cc "
        "#cpus 1 linux_boot not specified",
    ),
    (PolicyInfo(), "policy info"),
    (
        PolicyAdd(Policy(1, frozenset({0}), 32)),
        "policy add policy: 1 unikernels 0 CPUids 32 MB memory no block",
    ),
    (PolicyRemove(), "policy remove"),
    (BlockInfo(), "block info"),
    (BlockRemove(), "block remove"),
    (BlockAdd(10), "block add 10"),
    (BlockSet(True), "block set compressed true"),
    (BlockDump(0), "block dump, compress level 0"),
    (BlockAddOld(5, False, None), "old block add 5 (compressed false data no data)"),
    (BlockAddOld(5, True, b"abc"), "old block add 5 (compressed true data 3)"),
    (BlockSetOld(False, b"ab"), "old block set compressed false 2 bytes"),
    (BlockDumpOld(1), "old block dump, compress level 1"),
]


@pytest.mark.parametrize(("command", "text"), TEXTS, ids=lambda v: type(v).__name__)
def test_command_texts(command: Command, text: str) -> None:
    assert command_text(command) == text


def test_every_command_class_has_a_text() -> None:
    from core.wire import (
        BLOCK_COMMANDS,
        CONSOLE_COMMANDS,
        POLICY_COMMANDS,
        STATS_COMMANDS,
        UNIKERNEL_COMMANDS,
    )

    covered = {type(command) for command, _ in TEXTS}
    everything = set(
        CONSOLE_COMMANDS + STATS_COMMANDS + UNIKERNEL_COMMANDS + POLICY_COMMANDS + BLOCK_COMMANDS
    )
    assert everything <= covered


def test_render_breaks_like_ocaml_format() -> None:
    # case 079: a create spread over three lines at the 78-column margin
    pieces = describe_command(UnikernelCreate(UnikernelConfig(b"x" * 2827, 16, compressed=True)))
    assert render([f"signing {pieces[0]}", *pieces[1:]]) == (
        "signing unikernel create typ solo5 compression true image 2827 bytes\n"
        "fail behaviour quit startup at not specified add_name true CPUids 0\n"
        "16 MB memory block devices  bridge  #cpus 1 linux_boot not specified"
    )


@pytest.mark.parametrize(
    ("pieces", "column", "expected"),
    [
        ([], 0, ""),
        # Format's advance_left forces a pending break once the material waiting fills the
        # space left (format.ml: pending_count >= pp_space_left), so a line ends before
        # column 78.  The hand-written layout this replaced let 78 columns fit.
        (["a" * 70, "b" * 6], 0, "a" * 70 + " " + "b" * 6),  # 77 columns fit
        (["a" * 70, "b" * 7], 0, "a" * 70 + "\n" + "b" * 7),  # 78 do not
        (["a" * 10, "b" * 10], 60, "a" * 10 + "\n" + " " * 60 + "b" * 10),  # indent to the box
    ],
)
def test_render_margin(pieces: list[str], column: int, expected: str) -> None:
    assert render(pieces, column) == expected
