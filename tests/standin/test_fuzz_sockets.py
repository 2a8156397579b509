"""Mutated captured requests against a live stand-in: no connection may fail unexpectedly.

Every captured endpoint->daemon frame is sent with a few octets changed (a
seeded, reproducible mutation), on its own connection to the socket it was
captured on.  Mutants that still decode reach the handlers with odd values;
the others must be refused by the codec.  Afterwards the daemon must still
answer, and no connection may have ended in an unexpected exception (those
are logged with a traceback by the per-connection guard).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest
import trio
import trio.testing

from core.wire import UnikernelInfo, UnikernelInfoList, frame
from standin.testing import open_standin
from tests.standin.helpers import request
from tests.vectors import all_frames

MUTANTS_PER_FRAME = 20
SEED = 20261127


def mutants() -> list[tuple[str, bytes]]:
    rng = random.Random(SEED)
    out: list[tuple[str, bytes]] = []
    for f in all_frames():
        if f.direction != "to_daemon" or f.length <= 0 or f.body[:1] != b"\x30":
            continue  # raw block-data chunks have no structure to mutate
        for _ in range(MUTANTS_PER_FRAME):
            body = bytearray(f.body)
            for _ in range(rng.randint(1, 3)):
                pos = rng.randrange(min(len(body), 200))  # headers and small fields
                body[pos] = rng.randrange(256)
            out.append((f.sock, bytes(body)))
    return out


async def test_mutated_requests_never_break_a_connection_handler(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    cases = mutants()
    assert len(cases) > 1000
    caplog.set_level(logging.WARNING, logger="standin")
    async with open_standin(tmp_path) as standin:
        for sock, body in cases:
            stream = await trio.open_unix_socket(str(standin.socket(sock)))
            try:
                await stream.send_all(frame(body))
                with trio.move_on_after(5):  # virtual seconds; subscriptions keep streaming
                    while await stream.receive_some(65536):
                        pass
            except trio.BrokenResourceError:
                pass
            finally:
                await stream.aclose()
        await trio.sleep(30)  # let simulated unikernels started by mutants tick and exit
        info = await request(standin.socket("vmmd"), ":", UnikernelInfo())
        assert isinstance(info, UnikernelInfoList)
    failures = [r for r in caplog.records if r.exc_info is not None]
    assert not failures, "\n".join(r.getMessage() for r in failures)
