"""The security store at start: damage stops it (exit 125, with what to do), old files migrate.

Damage is never skipped: bytes flipped inside a record (SQLite cannot see that), a
broken page, a file that is not a database, an empty or foreign file, a damaged old
journal.  ``albatross-audit check-state`` finds the same damage offline.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import Encoding

from client import audit_cli as cli
from core.wire import UnikernelDestroy
from durable.database import StoreBusy, StoreDamaged
from tests.endpoint.pki import Pki
from tests.security.pki import NOW, create, policy, root
from tlsendpoint.cli import cli as endpoint_cli
from tlsendpoint.security.process import Security
from tlsendpoint.security.rules.replay import ReplayRefusal, leaf_record
from tlsendpoint.security.rules.rollback import RollbackRefusal, delegations
from tlsendpoint.security.setup import SecuritySetupError, open_security
from tlsendpoint.security.state.records import STORE_FILE, VERIFIED_FILE, SecurityStore

SECONDS = int(NOW.timestamp())
PAGE = 4096


def start(tmp_path: Path, state: Path) -> Security:
    """The endpoint's start-up of the security state (as tlsendpoint.cli does it)."""
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(root().cert.public_bytes(Encoding.PEM))
    security = open_security(ca_file, state_dir=state, crl_dir=None, audit_log=None,
                             audit_fsync=False, no_security=False)  # fmt: skip
    assert security is not None
    return security


def filled(state: Path) -> tuple[str, bytes]:
    """A closed store with one used leaf and one delegation; the leaf's key and the file."""
    store = SecurityStore(state / STORE_FILE)
    store.open()
    alice = root().delegate("alice", policy())
    chain = alice.leaf_chain("a1", UnikernelDestroy(), seconds=3600)
    record = leaf_record(chain[0], "alice")
    store.record_leaf(record, SECONDS)
    store.record_delegations(delegations(chain), SECONDS)
    store.close()  # the write-ahead log is folded into the file
    return record.key, (state / STORE_FILE).read_bytes()


def flip_in_key(key: str, data: bytes) -> bytes:
    at = data.index(key.encode()) + 5
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def flip_page_header(key: str, data: bytes) -> bytes:
    at = PAGE * 2  # the first table page after the schema: its b-tree page type
    return data[:at] + b"\xff" + data[at + 1 :]


def foreign(key: str, data: bytes) -> bytes:
    return b""  # replaced by a database of someone else (below)


DAMAGE: dict[str, tuple[Callable[[str, bytes], bytes], str]] = {
    "a byte flipped inside a record": (flip_in_key, "is damaged"),
    "a broken page": (flip_page_header, "database disk image is malformed"),
    "not a database": (lambda key, data: b"hello, world\n" * 600, "file is not a database"),
    "overwritten with zeros": (lambda key, data: bytes(len(data)), "is damaged"),
    "emptied": (lambda key, data: b"", "the file is empty"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_store_stops_the_start_with_what_to_do(tmp_path: Path, damage: str) -> None:
    state = tmp_path / "state"
    key, data = filled(state)
    change, expected = DAMAGE[damage]
    (state / STORE_FILE).write_bytes(change(key, data))
    with pytest.raises(SecuritySetupError) as caught:
        start(tmp_path, state)
    text = caught.value.message
    assert caught.value.exit_code == 125
    assert expected in text, text
    store = state / STORE_FILE
    assert f"mv {store} {store}.damaged" in text  # what to do, with the exact command
    assert f"albatross-audit check-state --state-dir {state}" in text
    result = CliRunner().invoke(cli.main, ["check-state", "--state-dir", str(state)])
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith(f"{store}: ")
    assert "what to do: stop every endpoint process" in result.stderr


def test_a_new_store_is_private_to_the_endpoints_user(tmp_path: Path) -> None:
    state = tmp_path / "new" / "state"
    security = start(tmp_path, state)
    assert security.store.leaf_used("0" * 32 + ":1") is False  # opens the side files too
    assert oct(state.stat().st_mode & 0o777) == "0o700"
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in state.iterdir()}
    expected = {f"security.db{x}": "0o600" for x in ("", "-wal", "-shm")}
    assert modes == {**expected, VERIFIED_FILE: "0o600"}  # the start-up check's stamp
    security.close()


def test_the_endpoint_command_exits_125_on_a_damaged_store(tmp_path: Path) -> None:
    state = tmp_path / "state"
    filled(state)
    (state / STORE_FILE).write_bytes(b"not a database at all" * 300)
    pki = Pki(tmp_path)
    result = CliRunner().invoke(endpoint_cli, [
        "--tmpdir", str(tmp_path), "--port", "0", "--ip", "127.0.0.1", "--state-dir", str(state),
        str(pki.ca_file), str(pki.cert_file), str(pki.key_file),
    ])  # fmt: skip
    assert result.exit_code == 125, result.output
    assert f"{state / STORE_FILE} is damaged: file is not a database" in result.stderr


def test_someone_elses_database_is_not_ours(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    other = sqlite3.connect(state / STORE_FILE)
    other.execute("CREATE TABLE notes (text TEXT)")
    other.commit()
    other.close()
    with pytest.raises(SecuritySetupError, match="it is not an albatross-tls state file"):
        start(tmp_path, state)


def test_a_store_of_a_newer_version_asks_for_an_upgrade(tmp_path: Path) -> None:
    state = tmp_path / "state"
    filled(state)
    newer = sqlite3.connect(state / STORE_FILE)
    newer.execute("PRAGMA user_version=2")
    newer.close()
    with pytest.raises(SecuritySetupError, match=r"written by a newer version .* upgrade"):
        start(tmp_path, state)


def test_check_state_reports_an_intact_store(tmp_path: Path) -> None:
    state = tmp_path / "state"
    filled(state)
    result = CliRunner().invoke(cli.main, ["check-state", "--state-dir", str(state)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{state / STORE_FILE}: ok, 1 replay records, 1 delegation paths\n"
    result = CliRunner().invoke(cli.main, ["check-state", "--state-dir", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "there is no security state at" in result.stderr


def test_check_state_finds_a_record_changed_behind_its_back(tmp_path: Path) -> None:
    state = tmp_path / "state"
    key, _ = filled(state)
    other = sqlite3.connect(state / STORE_FILE)
    other.execute("UPDATE replay SET not_after = not_after + 86400")  # outlives its leaf
    other.commit()
    other.close()
    result = CliRunner().invoke(cli.main, ["check-state", "--state-dir", str(state)])
    assert result.exit_code == 1
    assert f"replay record '{key}': does not match its checksum" in result.stderr


def test_check_state_finds_a_count_that_disagrees_with_the_records(tmp_path: Path) -> None:
    state = tmp_path / "state"
    filled(state)
    other = sqlite3.connect(state / STORE_FILE)
    other.execute("UPDATE replay_counts SET live = 5 WHERE owner = 'alice'")
    other.commit()
    other.close()
    result = CliRunner().invoke(cli.main, ["check-state", "--state-dir", str(state)])
    assert result.exit_code == 1
    assert "replay count of 'alice': kept 5, the records say 1" in result.stderr
    with pytest.raises(SecuritySetupError, match="replay count of 'alice'"):
        start(tmp_path, state)


# -- the previous format -------------------------------------------------------------


def old_files(state: Path) -> tuple[list[str], str]:
    """An old replay journal and rollback.json as the previous endpoint wrote them."""
    alice = root().delegate("alice", policy(), now=NOW)
    leaves = [alice.leaf_chain(f"a{i}", UnikernelDestroy(), seconds=3600) for i in range(3)]
    state.mkdir(exist_ok=True)
    lines = [f"{leaf_record(c[0], 'alice').key} {SECONDS + 3600} alice\n" for c in leaves]
    (state / "replay.journal").write_text("".join(lines))
    (state / "replay.journal.lock").write_bytes(b"")
    serial = f"{alice.cert.serial_number:x}"
    (state / "rollback.json").write_text(
        f'{{"version":1,"paths":{{"alice:":[{SECONDS},"{serial}",{SECONDS + 86400}]}}}}'
    )
    return lines, serial


def test_old_state_files_are_migrated_once_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    lines, _ = old_files(state)
    caplog.set_level(logging.INFO, "albatross.security")
    security = start(tmp_path, state)
    assert [r.getMessage() for r in caplog.records] == [
        "migrated 3 replay records and 1 delegation paths from replay.journal and "
        "rollback.json into security.db; the old files are kept as replay.journal.migrated, "
        "rollback.json.migrated"
    ]
    assert sorted(p.name for p in state.iterdir() if "security.db" not in p.name) == [
        "replay.journal.migrated",
        "rollback.json.migrated",
    ]
    store = security.store
    key = lines[1].split()[0]
    assert store.leaf_used(key)
    older = root().delegate("alice", policy(), now=NOW - dt.timedelta(days=30))
    with pytest.raises(RollbackRefusal):
        store.record_delegations(delegations(older.leaf_chain("a", create())), SECONDS)
    security.close()
    caplog.clear()
    start(tmp_path, state).close()  # once: nothing left to migrate
    assert caplog.records == []


JOURNAL_DAMAGE: dict[str, tuple[Callable[[str], str], str]] = {
    "a NUL octet": (lambda text: text[:20] + "\0" + text[21:], "line 1 is not a record"),
    "junk before the first record": (lambda text: "#junk\n" + text, "line 1 is not a record"),
    "overwritten": (lambda text: "x" * len(text), "line 1 is incomplete"),
    "a torn last record": (lambda text: text[:-9], "line 3 is incomplete"),
}


@pytest.mark.parametrize("damage", list(JOURNAL_DAMAGE))
def test_a_damaged_old_journal_stops_the_start(tmp_path: Path, damage: str) -> None:
    state = tmp_path / "state"
    old_files(state)
    change, expected = JOURNAL_DAMAGE[damage]
    journal = state / "replay.journal"
    journal.write_text(change(journal.read_text()))
    with pytest.raises(SecuritySetupError) as caught:
        start(tmp_path, state)
    assert caught.value.exit_code == 125
    text = caught.value.message
    assert f"the old replay journal {journal} is damaged: {expected}" in text, text
    assert "restore the file from a backup" in text or "restore it from a backup" in text
    assert journal.exists()  # nothing migrated, nothing renamed


def test_a_torn_old_journal_says_how_to_cut_the_torn_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    lines, _ = old_files(state)
    journal = state / "replay.journal"
    journal.write_text("".join(lines)[:-9])
    with pytest.raises(SecuritySetupError) as caught:
        start(tmp_path, state)
    intact = len("".join(lines[:2]))
    assert f"(truncate -s {intact} {journal})" in caught.value.message
    journal.write_bytes(journal.read_bytes()[:intact])  # the operator follows the advice
    security = start(tmp_path, state)
    assert security.store.counts().replay == 2
    security.close()


def test_a_damaged_old_rollback_file_stops_the_start(tmp_path: Path) -> None:
    state = tmp_path / "state"
    old_files(state)
    (state / "rollback.json").write_text('{"version":1,"paths":{"alice:":[1,"zz",2]}}')
    with pytest.raises(SecuritySetupError, match=r"rollback\.json is damaged: restore it"):
        start(tmp_path, state)


# -- damage found while running -----------------------------------------------------------


def test_damage_found_while_running_refuses_until_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    key, _ = filled(state)
    store = SecurityStore(state / STORE_FILE)
    store.open()
    other = sqlite3.connect(state / STORE_FILE)
    other.execute("UPDATE replay SET owner = 'mallory'")  # damage SQLite cannot see
    other.commit()
    other.close()
    with pytest.raises(StoreDamaged, match=f"the replay record {key} does not match"):
        store.leaf_used(key)
    alice = root().delegate("alice", policy())
    fresh = leaf_record(alice.leaf_chain("b", UnikernelDestroy())[0], "alice")
    with pytest.raises(StoreDamaged, match="refused until the endpoint is restarted"):
        store.record_leaf(fresh, SECONDS)  # another leaf: the store is not trusted any more
    with pytest.raises(StoreDamaged, match="refused until the endpoint is restarted"):
        store.all_seen()
    store.close()
    with pytest.raises(StoreDamaged, match="does not match its checksum"):
        SecurityStore(state / STORE_FILE).open()  # and the restart stops


def test_a_store_locked_by_another_process_is_waited_for_a_bounded_time(tmp_path: Path) -> None:
    store = SecurityStore(tmp_path / STORE_FILE, busy_timeout=0.2)
    store.open()
    other = sqlite3.connect(tmp_path / STORE_FILE, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writes and does not finish
    record = leaf_record(root().delegate("a", policy()).leaf_chain("x", create())[0], "a")
    with pytest.raises(StoreBusy, match="stayed locked by another process: database is locked"):
        store.record_leaf(record, SECONDS)
    other.execute("ROLLBACK")
    other.close()
    store.record_leaf(record, SECONDS)  # nothing was recorded: the leaf is still unused
    assert store.damage is None
    store.close()


def test_replay_refusal_is_not_damage(tmp_path: Path) -> None:
    store = SecurityStore(tmp_path / STORE_FILE)
    store.open()
    record = leaf_record(root().delegate("a", policy()).leaf_chain("x", create())[0], "a")
    store.record_leaf(record, SECONDS)
    with pytest.raises(ReplayRefusal):
        store.record_leaf(record, SECONDS)
    assert store.damage is None
    store.close()


# -- the start-up check's stamp (issue 13) ------------------------------------------------


def _count_full_checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    full_check = SecurityStore.problems

    def counted(self: SecurityStore) -> list[str]:
        calls.append(1)
        return full_check(self)

    monkeypatch.setattr(SecurityStore, "problems", counted)
    return calls


def test_an_unchanged_store_is_not_checked_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    filled(state)
    calls = _count_full_checks(monkeypatch)
    for _ in range(3):
        start(tmp_path, state).close()
    assert len(calls) == 1  # the first start checked and stamped; the content stayed
    assert oct((state / VERIFIED_FILE).stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damage_after_a_checked_start_still_stops_the_next(tmp_path: Path, damage: str) -> None:
    state = tmp_path / "state"
    key, data = filled(state)
    start(tmp_path, state).close()  # checked, stamped
    assert (state / VERIFIED_FILE).exists()
    change, expected = DAMAGE[damage]
    (state / STORE_FILE).write_bytes(change(key, data))
    with pytest.raises(SecuritySetupError, match=expected):
        start(tmp_path, state)


def test_a_write_since_the_check_means_a_full_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    filled(state)
    calls = _count_full_checks(monkeypatch)
    start(tmp_path, state).close()
    store = SecurityStore(state / STORE_FILE)
    store.open()
    chain = root().delegate("bob", policy()).leaf_chain("b1", UnikernelDestroy(), seconds=60)
    store.record_leaf(leaf_record(chain[0], "bob"), SECONDS)
    store.close()
    start(tmp_path, state).close()
    assert len(calls) == 2  # the first start, and the start after the write


@pytest.mark.parametrize("stamp", [b"", b"not a digest\n", b"0" * 64 + b"\n", b"\xff" * 300])
def test_a_stamp_that_does_not_match_is_no_stamp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stamp: bytes
) -> None:
    state = tmp_path / "state"
    key, data = filled(state)
    start(tmp_path, state).close()
    (state / VERIFIED_FILE).write_bytes(stamp)
    calls = _count_full_checks(monkeypatch)
    start(tmp_path, state).close()
    assert len(calls) == 1
    (state / STORE_FILE).write_bytes(flip_in_key(key, data))
    with pytest.raises(SecuritySetupError, match="is damaged"):
        start(tmp_path, state)
