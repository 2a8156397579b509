"""``ca revoke`` / ``ca crl``: the CA side of revocation, end to end with the endpoint's store."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from ca.cmd_revoke import crl_command, revoke_command
from ca.revoke import parse_serial, read_revoked, revoke, serials_for_names, write_crl
from ca.store import db_line
from core.errors import UsageError
from core.pem import encode_certificates, encode_private_key
from tests.security.pki import NOW, Ca, create, policy, root
from tlsendpoint.security.rules.revocation import RevocationRefusal
from tlsendpoint.security.state.crldir import CrlStore


def ca_files(tmp_path: Path, ca: Ca) -> tuple[Path, Path]:
    directory = tmp_path / "ca"
    directory.mkdir()
    cert, key = directory / "cacert.pem", directory / "ca.key"
    cert.write_bytes(encode_certificates([ca.cert]))
    key.write_bytes(encode_private_key(ca.key))
    return cert, key


def test_revoke_then_crl_is_honoured_by_the_endpoint(tmp_path: Path) -> None:
    ca = root()
    alice = ca.delegate("alice", policy())
    cacert, cakey = ca_files(tmp_path, ca)
    assert revoke(cacert.parent, [alice.cert.serial_number], NOW) == [alice.cert.serial_number]
    assert revoke(cacert.parent, [alice.cert.serial_number], NOW) == []  # idempotent
    crl_dir = tmp_path / "crls"
    crl_dir.mkdir()
    crl = write_crl(cacert, cakey, crl_dir / "root.crl", NOW)
    assert [r.serial_number for r in crl] == [alice.cert.serial_number]
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    again = write_crl(cacert, cakey, crl_dir / "root.crl", NOW)
    assert again.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == number + 1
    with pytest.raises(RevocationRefusal, match="CN=alice"):
        CrlStore(crl_dir, ca.cert).check(alice.leaf_chain("a", create()))


def test_serials_are_read_as_the_database_writes_them(tmp_path: Path) -> None:
    alice = root().delegate("alice", policy())
    db = tmp_path / "db"
    db.write_text(db_line(alice.cert, "alice") + "0a bob\n")
    assert serials_for_names(db, ["alice"]) == [alice.cert.serial_number]
    assert parse_serial("0x0A") == parse_serial("0a") == parse_serial("00:0a") == 10
    with pytest.raises(UsageError, match="not hexadecimal"):
        parse_serial("zz")
    with pytest.raises(UsageError, match="no certificate named 'carol'"):
        serials_for_names(db, ["carol"])


def test_damaged_revocation_list_is_reported(tmp_path: Path) -> None:
    (tmp_path / "revoked.txt").write_text("0a not-a-date\n")
    with pytest.raises(UsageError, match=r"revoked\.txt line 1 is damaged"):
        read_revoked(tmp_path)


def test_cli_revoke_and_crl(tmp_path: Path) -> None:
    ca = root()
    alice = ca.delegate("alice", policy())
    cacert, cakey = ca_files(tmp_path, ca)
    db = tmp_path / "db"
    db.write_text(db_line(alice.cert, "alice"))
    runner = CliRunner()
    result = runner.invoke(
        revoke_command, ["--cacert", str(cacert), "--db", str(db), "--name", "alice"]
    )
    assert result.exit_code == 0
    assert result.stdout == f"{alice.cert.serial_number:x} revoked\n"
    none = runner.invoke(revoke_command, ["--cacert", str(cacert)])
    assert (none.exit_code, none.stderr) == (
        124,
        "error: nothing to revoke: give serials or --name with --db\n",
    )
    out = tmp_path / "root.crl"
    made = runner.invoke(
        crl_command, ["--cacert", str(cacert), "--cakey", str(cakey), "--out", str(out)]
    )
    assert (made.exit_code, made.stdout) == (0, f"{out}: 1 revoked certificate(s)\n")
    assert read_revoked(cacert.parent).keys() == {alice.cert.serial_number}
