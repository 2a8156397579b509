"""durable.write_file: whole content or none, the asked mode, no overwrite when refused.

A real write failure comes from ``RLIMIT_FSIZE`` in a subprocess (the kernel refuses
to grow a file, as on a full disk); concurrency from threads writing the same file.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from durable.files import append_file, sync_directory, write_file


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("mode", [0o400, 0o600, 0o644])
def test_writes_the_content_with_exactly_the_mode(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "file"
    old = os.umask(0o077)  # the umask must not narrow what was asked (nor widen it)
    try:
        write_file(path, b"content", mode=mode)
    finally:
        os.umask(old)
    assert (path.read_bytes(), mode_of(path)) == (b"content", mode)
    assert leftovers(tmp_path) == []


def test_replaces_an_existing_file_and_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "file"
    write_file(path, b"old", mode=0o600)
    write_file(path, b"new", mode=0o644)
    assert (path.read_bytes(), mode_of(path)) == (b"new", 0o644)


def test_refuses_to_overwrite_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "key"
    write_file(path, b"first key", mode=0o400, overwrite=False)
    with pytest.raises(FileExistsError) as caught:
        write_file(path, b"second key", mode=0o600, overwrite=False)
    assert caught.value.filename == str(path)  # the target, not the temporary file
    assert (path.read_bytes(), mode_of(path)) == (b"first key", 0o400)
    assert leftovers(tmp_path) == []


def test_keeps_the_previous_content_as_backup(tmp_path: Path) -> None:
    path, backup = tmp_path / "state", tmp_path / "state.bak"
    write_file(path, b"one", mode=0o644, backup=backup)
    assert not backup.exists()  # nothing to keep yet
    write_file(path, b"two", mode=0o644, backup=backup)
    write_file(path, b"three", mode=0o644, backup=backup)
    assert (path.read_bytes(), backup.read_bytes()) == (b"three", b"two")


def test_a_missing_directory_is_an_error_naming_the_target(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "file"
    with pytest.raises(FileNotFoundError) as caught:
        write_file(path, b"x", mode=0o644)
    assert (caught.value.errno, caught.value.filename) == (errno.ENOENT, str(path))


def test_sync_directory_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "plain").write_bytes(b"")
    sync_directory(tmp_path)
    with pytest.raises(NotADirectoryError):
        sync_directory(tmp_path / "plain")


_FULL_DISK = """
import json, resource, sys
from pathlib import Path
from durable.files import write_file

path = Path(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))  # a file may not grow past 4 KiB
try:
    write_file(path, b"n" * 100_000, mode=0o644)
    error = None
except OSError as exc:
    error = [exc.errno, exc.filename]
print(json.dumps(error))
"""


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "file"
    write_file(path, b"old content", mode=0o644)
    result = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(path)],
        capture_output=True, text=True, timeout=60, check=False,
        cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [errno.EFBIG, str(path)]
    assert path.read_bytes() == b"old content"
    assert leftovers(tmp_path) == []


def test_concurrent_writers_never_mix_nor_fail(tmp_path: Path) -> None:
    """Each writer has its own temporary file: the last rename wins, whole."""
    path = tmp_path / "remotes.toml"
    contents = [bytes([65 + n]) * (10_000 + n) for n in range(4)]
    errors: list[BaseException] = []

    def writer(content: bytes) -> None:
        try:
            for _ in range(50):
                write_file(path, content, mode=0o600)
                assert path.read_bytes() in contents
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(c,)) for c in contents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert path.read_bytes() in contents
    assert leftovers(tmp_path) == []


def test_append_creates_with_exactly_the_mode_then_appends(tmp_path: Path) -> None:
    path = tmp_path / "revoked.txt"
    old = os.umask(0o077)
    try:
        append_file(path, b"one\n", mode=0o644)
        append_file(path, b"two\n", mode=0o600)  # the mode is for creating only
    finally:
        os.umask(old)
    assert (path.read_bytes(), mode_of(path)) == (b"one\ntwo\n", 0o644)


def test_append_to_a_missing_directory_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "db"
    with pytest.raises(FileNotFoundError) as caught:
        append_file(path, b"x\n", mode=0o644)
    assert caught.value.filename == str(path)
