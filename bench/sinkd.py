"""A vmmd that takes no time: it reads each message and answers ``success: created``.

(Usage queries - policy, unikernel and block info - get the empty answers of a fresh host.)

``python bench/sinkd.py TMPDIR`` listens on TMPDIR/util/vmmd.sock until SIGTERM.
The upload benchmark uses it to measure what the *endpoint* sustains for a
big ``create`` (the stand-in's own work on an 8 MiB image - decoding, storing,
starting the unikernel - is another figure).  Every message is decoded, so a
frame the endpoint sent wrongly still fails the benchmark.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import trio

from core.wire import (
    BlockDeviceList,
    BlockInfo,
    Message,
    Payload,
    PolicyInfo,
    PolicyList,
    StringReply,
    UnikernelInfo,
    UnikernelInfoList,
)
from transport.framed import FramedStream, TransportError

MAX_FRAME = 1 << 26
IO_TIMEOUT = 60.0


def _answer(request: Message) -> Payload:
    """An empty host for the endpoint's usage queries (security quotas), else success."""
    command = request.payload
    if isinstance(command, PolicyInfo):
        return PolicyList(())
    if isinstance(command, UnikernelInfo):
        return UnikernelInfoList((), command.variant)
    if isinstance(command, BlockInfo):
        return BlockDeviceList(())
    return StringReply("created")


async def _connection(stream: trio.SocketStream) -> None:
    framed = FramedStream(stream, MAX_FRAME, "endpoint")
    try:
        while True:
            with trio.fail_after(IO_TIMEOUT):
                request = await framed.receive_message()
                await framed.send_message(Message(request.header, _answer(request)))
    except (TransportError, trio.TooSlowError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def main(tmpdir: Path) -> None:
    util = tmpdir / "util"
    util.mkdir(parents=True, exist_ok=True)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(str(util / "vmmd.sock"))
    sock.listen(64)
    listener = trio.SocketListener(sock)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, _connection, [listener])
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


if __name__ == "__main__":
    trio.run(main, Path(sys.argv[1]))
