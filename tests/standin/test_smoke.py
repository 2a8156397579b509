from __future__ import annotations

from pathlib import Path

from core.wire import (
    StringReply,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelInfo,
    UnikernelInfoList,
)
from standin.testing import open_standin
from tests.standin.helpers import make_image, request


async def test_create_then_info(tmp_path: Path, autojump_clock: object) -> None:
    image = make_image(tmp_path, "t")
    async with open_standin(tmp_path) as standin:
        vmmd = standin.socket("vmmd")
        reply = await request(vmmd, ":hello", UnikernelCreate(UnikernelConfig(image=image)))
        assert reply == StringReply("created unikernel")
        info = await request(vmmd, ":", UnikernelInfo())
        assert isinstance(info, UnikernelInfoList)
        assert [str(n) for n, _ in info.unikernels] == [":hello"]
