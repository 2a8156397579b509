"""A real stack for end-to-end tests: the daemon stand-in and our TLS endpoint.

Both run in one trio loop in a background thread (the CLI under test calls
``trio.run`` itself); the endpoint listens on 127.0.0.1 port 0 and the stand-in
on unix sockets under the test's tmp_path.  Stopping sets the endpoint's
shutdown event and joins the thread (bounded).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from standin.testing import open_standin
from tlsendpoint.server import Endpoint
from tlsendpoint.tlscontext import load_server_context


@dataclass
class Stack:
    port: int
    tmpdir: Path  # the stand-in's tmpdir (``--tmpdir`` for local mode)


@contextmanager
def running_stack(tmp_path: Path, cacert: Path, cert: Path, key: Path) -> Iterator[Stack]:
    ready = threading.Event()
    state: dict[str, object] = {}

    async def main() -> None:
        # a host with bridge service, as in the README story (the stand-in has none by default)
        async with open_standin(tmp_path / "standin", bridges=("service",)) as standin:
            ctx = load_server_context(cacert, cert, key)
            endpoint = Endpoint(ctx, standin.tmpdir / "util")
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            shutdown = trio.Event()
            async with trio.open_nursery() as nursery:
                await nursery.start(endpoint.serve, listeners, shutdown)
                state["port"] = listeners[0].socket.getsockname()[1]
                state["tmpdir"] = standin.tmpdir
                state["token"] = trio.lowlevel.current_trio_token()
                state["shutdown"] = shutdown
                ready.set()

    def target() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # reported to the test below
            state["error"] = exc
            ready.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert ready.wait(10), "the stack did not start"
    if "error" in state:
        raise AssertionError(f"the stack failed: {state['error']!r}")
    try:
        yield Stack(int(state["port"]), Path(str(state["tmpdir"])))  # type: ignore[call-overload]
    finally:
        shutdown = state["shutdown"]
        assert isinstance(shutdown, trio.Event)
        token = state["token"]
        assert isinstance(token, trio.lowlevel.TrioToken)
        trio.from_thread.run_sync(shutdown.set, trio_token=token)
        thread.join(10)
        assert not thread.is_alive()
