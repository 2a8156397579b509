"""``update`` against a local builder-web double on 127.0.0.1 (http.server in a thread)."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner, Result

from client.cli import alba
from core.wire import (
    Failure,
    Name,
    Quit,
    StringReply,
    Typ,
    UnikernelCreate,
    UnikernelInfo,
    UnikernelInfoList,
    UnikernelInfoRecord,
)
from tests.client.helpers import Seen, fake_daemon, reply
from tests.vectors import CASES

OLD = CASES / "005-create-ticker-args" / "fake_ticker.hvt"
NEW = CASES / "003-create-hello-minimal" / "fake_hello.hvt"
DIGEST = hashlib.sha256(OLD.read_bytes()).hexdigest()
NEW_DIGEST = hashlib.sha256(NEW.read_bytes()).hexdigest()


class BuilderWeb(http.server.BaseHTTPRequestHandler):
    latest = "uuid-new"
    requests: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.requests.append(self.path)
        if self.path == f"/hash?sha256={DIGEST}":
            self._redirect("/job/ticker/build/uuid-old")
        elif self.path == "/job/ticker/build/latest":
            self._redirect(f"/job/ticker/build/{self.latest}")
        elif self.path == "/job/ticker/build/uuid-new/main-binary":
            body = NEW.read_bytes()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("location", location)
        self.send_header("content-length", "0")
        self.end_headers()


@pytest.fixture
def builder() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), BuilderWeb)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    BuilderWeb.requests = []
    BuilderWeb.latest = "uuid-new"
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _info(digest: bytes) -> UnikernelInfoList:
    record = UnikernelInfoRecord(
        typ=Typ.SOLO5, fail_behaviour=Quit(), cpuids=frozenset({0}), memory=16, digest=digest,
        started=dt.datetime(2026, 11, 27, tzinfo=dt.UTC), argv=("--x=1",),
    )  # fmt: skip
    return UnikernelInfoList(((Name.parse(":tick1"), record),))


def _daemon(seen: Seen) -> list[bytes]:
    if isinstance(seen.command, UnikernelInfo):
        return [reply(Name.parse(":tick1"), _info(bytes.fromhex(DIGEST)))]
    return [reply(Name.parse(":tick1"), StringReply("created unikernel"))]


def run(args: list[str]) -> Result:
    return CliRunner().invoke(alba, args, prog_name="albatross-client")


def test_update_force_creates_latest(builder: str, tmp_path: Path) -> None:
    sock = tmp_path / "vmmd.sock"
    with fake_daemon(sock, _daemon) as seen:
        result = run(["update", "tick1", "--http-host", builder, "--socket", str(sock)])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"compare at {builder}/compare/uuid-old/uuid-new\n"
        "host [unikernel: :tick1]: success: created unikernel\n"
    )
    create = seen[1].command
    assert isinstance(create, UnikernelCreate) and create.force
    assert create.config.image == NEW.read_bytes()  # local default: uncompressed
    assert create.config.memory == 16 and create.config.argv == ("--x=1",)


def test_update_dryrun(builder: str, tmp_path: Path) -> None:
    sock = tmp_path / "vmmd.sock"
    with fake_daemon(sock, _daemon) as seen:
        result = run(["update", "tick1", "--dryrun", "--http-host", builder + "/",
                      "--socket", str(sock)])  # fmt: skip
    assert result.exit_code == 0
    assert result.stdout == f"compare at {builder}/compare/uuid-old/uuid-new\n"
    assert len(seen) == 1
    assert "/job/ticker/build/uuid-new/main-binary" not in BuilderWeb.requests


def test_update_already_up_to_date(builder: str, tmp_path: Path) -> None:
    BuilderWeb.latest = "uuid-old"
    sock = tmp_path / "vmmd.sock"
    with fake_daemon(sock, _daemon):
        result = run(["update", "tick1", "--http-host", builder, "--socket", str(sock)])
    assert (result.exit_code, result.stdout) == (0, "already up to date\n")


def test_update_unknown_digest_is_118(builder: str, tmp_path: Path) -> None:
    def daemon(_seen: Seen) -> list[bytes]:
        return [reply(Name.parse(":tick1"), _info(b"\x00" * 32))]

    sock = tmp_path / "vmmd.sock"
    with fake_daemon(sock, daemon):
        result = run(["update", "tick1", "--http-host", builder, "--socket", str(sock)])
    assert result.exit_code == 118
    assert result.stdout == (
        "albatross-client: [ERROR] error in HTTP interaction: couldn't find the unikernel in "
        "the repository\n"
    )


def test_update_failure_reply_is_121(builder: str, tmp_path: Path) -> None:
    def daemon(_seen: Seen) -> list[bytes]:
        return [reply(Name.parse(":tick1"), Failure("nope"))]

    sock = tmp_path / "vmmd.sock"
    with fake_daemon(sock, daemon):
        result = run(["update", "tick1", "--http-host", builder, "--socket", str(sock)])
    assert result.exit_code == 121
    assert result.stdout == (
        "albatross-client: [ERROR] unexpected reply: host [unikernel: :tick1]: command failed "
        "nope\n"
    )


def test_update_bad_host_and_csr() -> None:
    bad = run(["update", "x", "--http-host", "ftp://x"])
    assert bad.exit_code == 124
    assert "expected http[s]://hostname" in bad.stderr
    csr = run(["update", "x", "--csr"])
    assert (csr.exit_code, csr.stdout) == (
        124, "albatross-client: [ERROR] update with CSR not supported\n")  # fmt: skip


def test_update_over_tls(builder: str, tmp_path: Path) -> None:
    """Remote update: two leaves (info, then force-create with the image at level 9)."""
    import zlib

    from tests.client.helpers import Pki, fake_endpoint

    pki = Pki(tmp_path)
    with fake_endpoint(pki, _daemon) as (port, seen):
        result = run(["update", "tick1", "--http-host", builder, *pki.remote_args(port)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "host [unikernel: :tick1]: success: created unikernel"
    assert [s.cn for s in seen] == ["tick1", "tick1"]
    create = seen[1].command
    assert isinstance(create, UnikernelCreate) and create.config.compressed
    assert zlib.decompress(create.config.image) == NEW.read_bytes()


@pytest.mark.parametrize(
    ("digests", "jobs", "refusal"),
    [
        (
            None,
            {"web", "dns"},
            "the delegation alice: pins builder-web jobs dns, web: job ticker is not one of them",
        ),
        (
            {DIGEST},
            {"ticker"},
            f"the latest build of ticker: image sha256 {NEW_DIGEST}"
            " is not pinned by the delegation alice: (1 digest(s) allowed): ask its delegator to"
            " add it, or deploy a pinned build",
        ),
        ({NEW_DIGEST}, {"ticker"}, None),
    ],
)
def test_update_honours_the_pins_of_its_chain(
    builder: str, tmp_path: Path, digests: set[str] | None, jobs: set[str], refusal: str | None
) -> None:
    """Job pins are checked by the client (the endpoint cannot), digest pins by both."""
    from ca import profiles
    from core.pins import Pins
    from tests.client.helpers import ALICE_POLICY, Pki, fake_endpoint, key_pem, pem

    pki = Pki(tmp_path)
    key = profiles.generate_key()
    pins = Pins(
        None if digests is None else frozenset(map(bytes.fromhex, digests)), frozenset(jobs)
    )
    alice = profiles.intermediate(
        pki.root_cert, pki.root_key, key.public_key(), "alice", ALICE_POLICY, pki.now, pins=pins
    )
    (tmp_path / "pinned.pem").write_bytes(pem(alice))
    (tmp_path / "pinned.key").write_bytes(key_pem(key))
    with fake_endpoint(pki, _daemon) as (port, seen):
        result = run(["update", "tick1", "--http-host", builder, *pki.remote_args(port, "pinned")])
    if refusal is None:
        assert result.exit_code == 0, result.output
        assert [s.cn for s in seen] == ["tick1", "tick1"]
    else:
        assert result.exit_code == 124, result.output
        assert f"not deploying the latest build: {refusal}" in result.output
        assert [type(s.command) for s in seen] == [UnikernelInfo]  # nothing was deployed
