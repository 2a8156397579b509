"""Every entry of --crl-dir is accounted for (issue 11 point 3).

An entry the endpoint skipped could be the CRL the operator relies on, so anything
that is not a readable CRL stops the start (exit 125, naming it) and, while the
endpoint runs, leaves the previous CRLs in force with a log line naming it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ca.revoke import make_crl
from core.wire import UnikernelInfo
from tests.endpoint.pki import Pki
from tests.security.pki import NOW, Ca, create, policy, root
from tests.security.rig import failure, now, open_rig, small
from tlsendpoint.security.process import reload_on_sighup
from tlsendpoint.security.rules.revocation import RevocationError, RevocationRefusal
from tlsendpoint.security.state.crldir import CrlStore

ENDPOINT = Path(sys.executable).parent / "albatross-tls-endpoint"


def crl_pem(ca: Ca, *certs: x509.Certificate) -> bytes:
    crl = make_crl(ca.cert, ca.key, {c.serial_number: NOW for c in certs}, NOW, 1)
    return crl.public_bytes(serialization.Encoding.PEM)


def crl_der(ca: Ca, *certs: x509.Certificate) -> bytes:
    pem = crl_pem(ca, *certs)
    return x509.load_pem_x509_crl(pem).public_bytes(serialization.Encoding.DER)


@pytest.fixture
def tree() -> tuple[Ca, Ca]:
    ca = root()
    return ca, ca.delegate("alice", policy())


def problem(directory: Path, anchor: x509.Certificate) -> str:
    with pytest.raises(RevocationError) as caught:
        CrlStore(directory, anchor)
    return caught.value.message


# -- what stops the start ---------------------------------------------------------------

BadEntry = Callable[[Path], object]

BAD_ENTRIES: dict[str, tuple[BadEntry, str]] = {
    "dangling symlink": (
        lambda d: (d / "alice.crl").symlink_to(d / "gone.crl"),
        "alice.crl: a symbolic link to {d}/gone.crl, which does not exist",
    ),
    "symlink loop": (
        lambda d: (d / "loop.crl").symlink_to(d / "loop.crl"),
        "loop.crl: cannot examine it: Too many levels of symbolic links",
    ),
    "directory with a CRL name": (
        lambda d: (d / "old.crl").mkdir(),
        "old.crl: a directory, not a CRL file",
    ),
    "directory": (
        lambda d: (d / "archive").mkdir(),
        "archive: not a CRL file name (move it out of the directory or rename it)",
    ),
    "readme": (
        lambda d: (d / "README").write_text("CRLs for host.example\n"),
        "README: not a CRL file name (move it out of the directory or rename it)",
    ),
    "a copy left by an editor": (
        lambda d: (d / "root.crl~").write_bytes(b""),
        "root.crl~: not a CRL file name (move it out of the directory or rename it)",
    ),
    "garbage": (
        lambda d: (d / "junk.pem").write_bytes(b"not a CRL"),
        "junk.pem is not a CRL (PEM or DER): ",
    ),
    "empty": (
        lambda d: (d / "empty.der").write_bytes(b""),
        "empty.der is not a CRL (PEM or DER): ",
    ),
    "fifo": (  # opened with O_NONBLOCK: examined, never read, never hangs
        lambda d: os.mkfifo(d / "pipe.crl"),
        "pipe.crl: a FIFO, not a CRL file",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ENTRIES))
def test_an_entry_that_is_not_a_readable_crl_is_named(
    tmp_path: Path, tree: tuple[Ca, Ca], case: str
) -> None:
    ca, alice = tree
    (tmp_path / "root.crl").write_bytes(crl_pem(ca, alice.cert))  # a good one beside it
    make, text = BAD_ENTRIES[case]
    make(tmp_path)
    message = problem(tmp_path, ca.cert)
    assert message.startswith(f"CRL directory {tmp_path}: 1 entry is not a readable CRL: "), message
    assert text.format(d=tmp_path) in message
    assert message.endswith(
        "(every entry must be a CRL file named *.crl, *.pem or *.der; "
        "names starting with '.' are ignored)"
    )


def test_every_bad_entry_is_named_at_once(tmp_path: Path, tree: tuple[Ca, Ca]) -> None:
    ca, _ = tree
    (tmp_path / "b.crl").symlink_to(tmp_path / "missing")
    (tmp_path / "a.pem").write_bytes(b"junk")
    (tmp_path / "notes.txt").write_text("x")
    message = problem(tmp_path, ca.cert)
    assert "3 entries are not a readable CRL: a.pem is not a CRL" in message
    assert message.index("a.pem") < message.index("b.crl") < message.index("notes.txt")


def test_what_is_accepted(tmp_path: Path, tree: tuple[Ca, Ca]) -> None:
    ca, alice = tree
    bob = alice.delegate("bob", policy())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    crls = tmp_path / "crls"
    crls.mkdir()
    (elsewhere / "root.pem").write_bytes(crl_pem(ca, alice.cert))
    (crls / "root.crl").symlink_to(elsewhere / "root.pem")  # a symlink to a CRL file
    (crls / "ALICE.DER").write_bytes(crl_der(alice, bob.cert))  # DER, any case of the suffix
    (crls / ".README").write_text("hidden: ignored\n")  # names starting with "." are ignored
    (crls / ".gone.crl").symlink_to(tmp_path / "nothing")
    (crls / ".partial").mkdir()
    store = CrlStore(crls, ca.cert)
    with pytest.raises(RevocationRefusal, match="CN=alice"):
        store.check(alice.leaf_chain("a1", create()))
    with pytest.raises(RevocationRefusal, match="intermediate certificate CN=bob"):
        store.check(bob.leaf_chain("b1", create()))


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A directory another user can enter (pytest's tmp_path sits under a 0700 directory)."""
    with tempfile.TemporaryDirectory(prefix="crl-dir-") as name:
        Path(name).chmod(0o755)
        yield Path(name)


def _as_unprivileged(directory: Path, anchor: x509.Certificate) -> str:
    """CrlStore(directory) in a child that dropped root's privileges; its error text."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)  # nobody: file modes apply again
            CrlStore(directory, anchor)
            os.write(write_end, b"no error")
        except RevocationError as exc:
            os.write(write_end, exc.message.encode())
        except BaseException as exc:
            os.write(write_end, f"child failed: {exc!r}".encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        text = pipe.read().decode()
    os.waitpid(pid, 0)
    return text


def test_an_unreadable_crl_stops_the_start(world_readable_dir: Path, tree: tuple[Ca, Ca]) -> None:
    ca, alice = tree
    target = world_readable_dir / "root.crl"
    target.write_bytes(crl_pem(ca, alice.cert))
    target.chmod(0)
    if os.geteuid() == 0:
        # root reads any file whatever its mode: the check runs in a child that dropped to
        # nobody, where the mode applies as it does for the endpoint's own user
        message = _as_unprivileged(world_readable_dir, ca.cert)
        if message.startswith("child failed: PermissionError"):
            pytest.skip(f"running as root and cannot drop privileges here ({message})")
    else:
        message = problem(world_readable_dir, ca.cert)
    assert "root.crl: cannot read it: Permission denied" in message, message


# -- the endpoint's start: exit 125 naming the entry ------------------------------------


def test_the_endpoint_does_not_start_with_a_bad_crl_entry(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    crls = tmp_path / "crls"
    crls.mkdir()
    (crls / "root.crl").symlink_to(tmp_path / "renamed.crl")
    args = [str(ENDPOINT), "--tmpdir", str(tmp_path), "--port", "0", "--ip", "127.0.0.1",
            "--state-dir", str(tmp_path / "sec"), "--crl-dir", str(crls),
            str(pki.ca_file), str(pki.cert_file), str(pki.key_file)]  # fmt: skip
    try:  # a process with a deadline: an endpoint that starts anyway would serve forever
        result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the endpoint started despite a dangling symlink in --crl-dir")
    assert result.returncode == 125, result.stderr
    assert (
        f"albatross-tls-endpoint: CRL directory {crls}: 1 entry is not a readable CRL: "
        f"root.crl: a symbolic link to {tmp_path}/renamed.crl, which does not exist"
        in result.stderr
    ), result.stderr


# -- while running: the previous CRLs stay, the log names the entry ---------------------


def test_reload_keeps_the_previous_crls_and_reports_a_state_once(
    tmp_path: Path, tree: tuple[Ca, Ca]
) -> None:
    ca, alice = tree
    (tmp_path / "root.crl").write_bytes(crl_pem(ca, alice.cert))
    store = CrlStore(tmp_path, ca.cert)
    chain = alice.leaf_chain("a1", create())
    (tmp_path / "root.crl").unlink()
    (tmp_path / "root.crl").symlink_to(tmp_path / "moved-away.crl")  # the CRL "vanishes"
    with pytest.raises(RevocationError, match=r"root\.crl: a symbolic link to "):
        store.maybe_reload()
    assert not store.maybe_reload()  # the same state: reported once, not per connection
    with pytest.raises(RevocationRefusal):  # alice stays revoked
        store.check(chain)
    with pytest.raises(RevocationError, match=r"root\.crl: a symbolic link"):
        store.reload()  # SIGHUP always tries (and reports) again
    (tmp_path / "moved-away.crl").write_bytes(crl_pem(ca))  # now it resolves: an empty CRL
    assert store.maybe_reload()
    store.check(chain)


async def test_a_running_endpoint_keeps_revoking_and_logs_the_bad_entry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "albatross.security")
    crls = tmp_path / "crls"
    crls.mkdir()
    async with open_rig(tmp_path, crl_dir=crls) as rig:
        alice = rig.delegate(rig.root, "alice", small())
        crl = make_crl(rig.root.cert, rig.root.key, {alice.cert.serial_number: now()}, now(), 1)
        (crls / "root.crl").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        assert "was revoked" in failure(await rig.send(alice, ".", UnikernelInfo()))
        (crls / "extra.crl").symlink_to(crls / "not-there.crl")  # a bad entry appears
        for _ in range(2):  # the per-connection refresh: still revoked, reported once
            assert "was revoked" in failure(await rig.send(alice, ".", UnikernelInfo()))

        def reports() -> list[str]:
            return [r.getMessage() for r in caplog.records if "extra.crl" in r.getMessage()]

        assert len(reports()) == 1, reports()
        assert reports()[0].startswith("CRLs not reloaded, the previous ones stay in force: ")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reload_on_sighup, rig.security)
            for _ in range(500):  # bounded: the receiver is installed once the task runs
                if signal.getsignal(signal.SIGHUP) not in (signal.SIG_DFL, signal.SIG_IGN, None):
                    break
                await trio.sleep(0.01)
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(500):  # bounded wait for the SIGHUP's log line
                if len(reports()) == 2:
                    break
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        assert reports()[1].startswith("SIGHUP: CRLs not reloaded, previous ones stay: ")
        assert "extra.crl: a symbolic link to" in reports()[1]
        assert "was revoked" in failure(await rig.send(alice, ".", UnikernelInfo()))
        (crls / "extra.crl").unlink()  # fixed: the next connection reloads
        assert "was revoked" in failure(await rig.send(alice, ".", UnikernelInfo()))
        assert any("reloaded CRLs from" in r.getMessage() for r in caplog.records)


if sys.platform != "linux":  # pragma: no cover - the suite runs on Linux
    pytestmark = pytest.mark.skip(reason="FIFOs, symlink loops and setuid as on Linux")
