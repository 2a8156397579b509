"""Our client `alba`, as a separate process, through the endpoint to the stand-in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import trio
from cryptography.hazmat.primitives import serialization

from core.wire import Policy
from standin.testing import open_standin
from tests.endpoint.pki import Pki, write_chain
from tests.vectors import MKFAKE
from tlsendpoint.activation import tcp_listen_socket
from tlsendpoint.limits import Limits
from tlsendpoint.server import Endpoint
from tlsendpoint.tlscontext import load_server_context

ALBA = Path(sys.executable).parent / "alba"


def _write_key(path: Path, key: object) -> Path:
    path.write_bytes(
        key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


async def _alba(port: int, ca: Path, ca_key: Path, server_ca: Path, *args: str) -> tuple[int, str]:
    result = await trio.run_process(
        [
            str(ALBA),
            *args,
            "-d",
            f"127.0.0.1:{port}",
            "--ca",
            str(ca),
            "--ca-key",
            str(ca_key),
            "--server-ca",
            str(server_ca),
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return result.returncode, (result.stdout + result.stderr).decode()


async def test_alba_through_the_endpoint(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    root_key = _write_key(tmp_path / "ca.key", pki.root_key)
    friend_cert, friend_key = pki.sub_ca("friend", Policy(1, frozenset({0}), 64, None, frozenset()))
    friend_pem = write_chain(tmp_path / "friend.pem", [friend_cert])
    friend_key_file = _write_key(tmp_path / "friend.key", friend_key)
    image = tmp_path / "hello.hvt"
    subprocess.run(
        [sys.executable, str(MKFAKE), str(image)], check=True, timeout=60, capture_output=True
    )
    async with open_standin(tmp_path) as standin:
        ctx = load_server_context(pki.ca_file, pki.cert_file, pki.key_file)
        endpoint = Endpoint(ctx, standin.tmpdir / "util", Limits())
        listener = trio.SocketListener(
            trio.socket.from_stdlib_socket(tcp_listen_socket("127.0.0.1", 0, 16))
        )
        shutdown = trio.Event()
        async with trio.open_nursery() as nursery:
            (address,) = await nursery.start(endpoint.serve, [listener], shutdown)
            port = address[1]
            code, out = await _alba(port, pki.ca_file, root_key, pki.ca_file, "info")
            assert (code, out.strip()) == (0, "host [unikernel: :]: no unikernels"), out
            friend = (friend_pem, friend_key_file, pki.ca_file)
            code, out = await _alba(port, *friend, "create", "hello", str(image), "--mem=32")
            assert code == 0, out
            assert "host [unikernel: friend:hello]: success: created unikernel" in out
            code, out = await _alba(port, *friend, "create", "again", str(image), "--mem=32")
            assert code != 0
            assert "command failed maximum amount of unikernels (1) reached" in out
            # albatross closes silently here; we say why (leaf CN "" for the root path)
            code, out = await _alba(port, pki.ca_file, root_key, pki.ca_file, "policy")
            assert code != 0
            assert "command failed invalid label" in out, out
            shutdown.set()
