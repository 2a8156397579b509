"""The endpoint's security options in a real process: the endpoint, alba, albatross-audit."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import trio
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from ca import profiles
from core.wire import Failure, UnikernelDestroy
from standin.testing import open_standin
from tests.endpoint.harness import Client
from tests.endpoint.pki import Pki, write_chain
from tests.security.rig import now, small
from tests.vectors import MKFAKE
from tlsendpoint.cli import cli

BIN = Path(sys.executable).parent


def _key(path: Path, key: profiles.PrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def test_security_options_that_cannot_work_stop_the_start(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    files = [str(pki.ca_file), str(pki.cert_file), str(pki.key_file)]
    common = ["--tmpdir", str(tmp_path), "--port", "0", "--ip", "127.0.0.1"]
    result = CliRunner().invoke(
        cli, [*common, "--no-security", "--audit-log", str(tmp_path / "a.log"), *files]
    )
    assert result.exit_code == 125
    assert "--no-security cannot be combined with --crl-dir or --audit-log" in result.output
    (tmp_path / "plain").write_text("not a directory")
    result = CliRunner().invoke(cli, [*common, "--state-dir", str(tmp_path / "plain/x"), *files])
    assert result.exit_code == 125
    assert "cannot open the security state in" in result.output
    assert "(option --state-dir)" in result.output


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_the_endpoint_process_enforces_and_audits(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    alice_key = profiles.generate_key()
    # both policies name bridge service, which the host (the stand-in) does not have
    service = replace(small(unikernels=1), bridges=frozenset({"service"}))
    alice = profiles.intermediate(pki.root, pki.root_key, alice_key.public_key(), "alice",
                                  service, now())  # fmt: skip
    bob_key = profiles.generate_key()
    bob = profiles.intermediate(alice, alice_key, bob_key.public_key(), "bob", service, now())
    bob_files = [str(write_chain(tmp_path / "bob.pem", [bob, alice])),
                 str(_key(tmp_path / "bob.key", bob_key))]  # fmt: skip
    image = tmp_path / "hello.hvt"
    subprocess.run([sys.executable, str(MKFAKE), str(image)], check=True, capture_output=True)
    net_image = tmp_path / "net.hvt"
    subprocess.run([sys.executable, str(MKFAKE), str(net_image), "--net", "service0"],
                   check=True, capture_output=True)  # fmt: skip
    audit = tmp_path / "audit.log"
    crl_dir = tmp_path / "crls"
    crl_dir.mkdir()
    port = _free_port()
    async with open_standin(tmp_path, bridges=()) as standin:
        args = [str(BIN / "albatross-tls-endpoint"), "--ip", "127.0.0.1", "--port", str(port),
                "--tmpdir", str(standin.tmpdir), "--state-dir", str(tmp_path / "sec"),
                "--crl-dir", str(crl_dir), "--audit-log", str(audit), "--audit-fsync",
                str(pki.ca_file), str(pki.cert_file), str(pki.key_file)]  # fmt: skip
        async with trio.open_nursery() as nursery:
            process = await nursery.start(trio.run_process, args)
            try:

                async def alba(*command: str) -> tuple[int, str]:
                    result = await trio.run_process(
                        [str(BIN / "alba"), *command, "-d", f"127.0.0.1:{port}", "--ca",
                         bob_files[0], "--ca-key", bob_files[1], "--server-ca", str(pki.ca_file)],
                        capture_stdout=True, capture_stderr=True, check=False,
                    )  # fmt: skip
                    return result.returncode, (result.stdout + result.stderr).decode()

                with trio.fail_after(30):  # the endpoint is listening once alba gets through
                    while True:
                        code, out = await alba("info")
                        if "connect failed" not in out:
                            break
                        await trio.sleep(0.05)
                assert code == 0, out
                code, out = await alba("create", "n1", str(net_image), "--net=service0:service")
                assert code == 117
                assert (
                    "command failed bridges service not allowed by policy: bridge service is not"
                    " present on this host" in out
                ), out
                code, out = await alba("create", "b1", str(image), "--mem=32")
                assert code == 0, out
                code, out = await alba("create", "b2", str(image), "--mem=32")
                assert code != 0
                assert (
                    "command failed maximum amount of unikernels (1) reached in the whole subtree"
                    " of delegation alice:bob: (certificate CN bob), field unikernels"
                    " (limit 1, used 1, requested 1)" in out
                ), out
            finally:
                process.send_signal(signal.SIGTERM)
    result = await trio.run_process(
        [str(BIN / "albatross-audit"), "verify", str(audit)], capture_stdout=True, check=False
    )
    assert result.returncode == 0, result.stdout
    assert b"ok, 6 lines" in result.stdout  # info, b1: allow + outcome; n1, b2: deny


async def test_replay_is_refused_whichever_worker_serves(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    destroy = pki.leaf("a1", UnikernelDestroy())
    port = _free_port()
    async with open_standin(tmp_path, bridges=()) as standin:
        args = [str(BIN / "albatross-tls-endpoint"), "--ip", "127.0.0.1", "--port", str(port),
                "--workers", "2", "--tmpdir", str(standin.tmpdir),
                "--state-dir", str(tmp_path / "sec"),
                str(pki.ca_file), str(pki.cert_file), str(pki.key_file)]  # fmt: skip
        async with trio.open_nursery() as nursery:
            process = await nursery.start(trio.run_process, args)
            try:
                replies: list[str] = []
                with trio.fail_after(30):
                    while len(replies) < 6:
                        try:
                            tcp = await trio.open_tcp_stream("127.0.0.1", port)
                        except OSError:  # not listening yet
                            await trio.sleep(0.05)
                            continue
                        tls = trio.SSLStream(tcp, pki.client(destroy), server_hostname=None)
                        payload = (await Client(tls).read_all())[-1].payload
                        await trio.aclose_forcefully(tls)
                        assert isinstance(payload, Failure)
                        replies.append(payload.message)
            finally:
                process.send_signal(signal.SIGTERM)
    assert "already executed" not in replies[0]  # the daemon's own answer: no such unikernel
    assert all("already executed a state-changing command" in r for r in replies[1:]), replies
