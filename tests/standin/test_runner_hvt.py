"""The solo5-hvt runner, driven with a stand-in tender script (no Solo5 needed)."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner

from core.errors import UsageError
from core.wire import (
    BlockAdd,
    BlockDevice,
    ConsoleData,
    ConsoleSubscribe,
    Name,
    StringReply,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelInfo,
    UnikernelInfoList,
)
from standin.cli import main
from standin.runner import LaunchSpec
from standin.runner_hvt import Solo5HvtRunner, find_tender, tender_command
from standin.testing import open_standin
from tests.standin.helpers import Client, make_image, request

# Prints its command line, then sleeps "forever" unless an argument says exit=N.
FAKE_TENDER = """#!{python}
import sys, time
args = sys.argv[1:]
print("tender " + " ".join(args), flush=True)
codes = [int(a[5:]) for a in args if a.startswith("exit=")]
if codes:
    sys.exit(codes[0])
time.sleep(600)
"""


@pytest.fixture
def tender(tmp_path: Path) -> Path:
    path = tmp_path / "bin" / "solo5-hvt"
    path.parent.mkdir()
    path.write_text(FAKE_TENDER.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_command_line_is_albatrossds() -> None:
    spec = LaunchSpec(
        name=Name.parse("alice:a"),
        image=b"",
        config=UnikernelConfig(b"", memory=48),
        arguments=("--name=a", "x"),
        nets=(("service0", "vmmtap0", bytes([0, 0x80, 0x41, 1, 2, 3])),),
        block_files=(("storage", "/db/block/alice:disk"),),
    )
    assert tender_command("/bin/hvt", spec, Path("/run/alice:a.img")) == [
        "/bin/hvt",
        "--mem=48",
        "--net:service0=vmmtap0",
        "--net-mac:service0=00:80:41:01:02:03",
        "--block:storage=/db/block/alice:disk",
        "/run/alice:a.img",
        "--name=a",
        "x",
    ]


def test_missing_tender() -> None:
    with pytest.raises(UsageError, match="tender does not exist, looked for no-such-hvt"):
        find_tender("no-such-hvt")
    result = CliRunner().invoke(
        main,
        [
            "--tmpdir",
            "/tmp/x",
            "--state-dir",
            "/tmp/y",
            "--runner",
            "solo5-hvt",
            "--tender",
            "no-such-hvt",
        ],
    )
    assert result.exit_code == 2
    assert "tender does not exist" in result.output


async def test_tender_runs_prints_exits_and_is_destroyed(tmp_path: Path, tender: Path) -> None:
    image = make_image(tmp_path, "blk", "--block", "storage")
    async with open_standin(
        tmp_path, runner=Solo5HvtRunner(tmp_path / "work", os.fspath(tender))
    ) as standin:
        vmmd = standin.socket("vmmd")
        assert await request(vmmd, ":disk", BlockAdd(1)) == StringReply("added block device")
        config = UnikernelConfig(
            image, argv=("hello",), blocks=frozenset({BlockDevice("storage", "disk")})
        )
        console = await Client.connect(standin.socket("console"))
        await console.send(":u", ConsoleSubscribe(count=5))
        assert await console.reply() == StringReply("waiting for VM")
        assert await request(vmmd, ":u", UnikernelCreate(config)) == StringReply(
            "created unikernel"
        )
        line = await console.reply()
        assert isinstance(line, ConsoleData)
        block = standin.state_dir / "block" / ":disk"
        image_path = tmp_path / "work" / ":u.img"
        assert line.line == f"tender --mem=32 --block:storage={block} {image_path} --name=u hello"
        assert image_path.read_bytes() == image
        assert await request(vmmd, ":u", UnikernelDestroy()) == StringReply("destroyed unikernel")
        assert not image_path.exists()
        await console.close()
        ended = UnikernelConfig(make_image(tmp_path, "t"), argv=("exit=3",))
        assert await request(vmmd, ":e", UnikernelCreate(ended)) == StringReply("created unikernel")
        for _ in range(200):  # bounded: the script exits at once
            info = await request(vmmd, ":e", UnikernelInfo())
            if info == UnikernelInfoList(()):
                break
            await trio.sleep(0.05)
        assert info == UnikernelInfoList(())
