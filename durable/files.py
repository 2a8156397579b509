# Whole files written so that a crash leaves the old content or the new, never a mix.
#
# write_file() is the one way this project replaces or creates a file that must stay
# intact (certificates, keys, CRLs, counters, the client's remotes, the stand-in's
# state): the bytes go to a temporary file in the same directory (a rename is atomic
# only within one file system), which gets its mode and is fsync'd; then it is renamed
# over the target - or, for keys, hard-linked to it, which fails if the target exists,
# so nothing is ever overwritten by accident, not even by a process racing us - and the
# directory is fsync'd so the rename itself survives a power cut.  A failure at any
# step before the rename removes the temporary file and leaves the target as it was.
#
# The temporary name is unique (mkstemp), so two processes writing the same file at
# once never write into each other's temporary file: the last rename wins whole.  It
# starts with "." and ends with ".tmp" (".<name>.XXXXXXXX.tmp"), so a reader that scans
# the directory and skips dot files (the endpoint's CRL directory) never sees it.
#
# The mode is set on the open descriptor (fchmod) before any byte is written, so a key
# is never readable by others, not even for a moment, and the umask neither widens nor
# narrows it.
#
# append_file() is the other way: a line added to a log-like file (the CA's serial
# database, its revocation list) with O_APPEND, then fsync'd.  A crash during the write
# may leave the last line cut short; the readers of those files report such a line as
# damage (the endpoint's audit log, which must recover from it, has its own writer).
#
# Errors are the OSError the failing call raised, re-raised naming the target (not the
# temporary file): each caller turns it into its own error, in its own words and with
# its own exit code, as it does for any other OSError of its files.
from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["append_file", "sync_directory", "write_file"]


def sync_directory(directory: Path) -> None:
    """fsync *directory*, so the names created, renamed or removed in it are on disk."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(
    path: Path,
    data: bytes,
    *,
    mode: int,
    overwrite: bool = True,
    backup: Path | None = None,
) -> None:
    """Make *path* hold exactly *data* with permissions *mode*, atomically and durably.

    With ``overwrite=False`` an existing *path* is never replaced: FileExistsError
    (for keys).  With *backup*, the previous content of *path* (if any) is kept there
    (a hard link made just before the rename, so *path* itself never goes missing).
    Raises OSError naming *path*; no temporary file is left behind, and the target is
    unchanged unless only the final fsync of the directory failed.
    """
    directory = path.parent
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    temporary = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:  # closes fd whatever happens next
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if backup is not None and path.exists():
            backup.unlink(missing_ok=True)
            os.link(path, backup)
        if overwrite:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)  # fails if path exists: never replaces it
            temporary.unlink()
        sync_directory(directory)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def append_file(path: Path, data: bytes, *, mode: int) -> None:
    """Append *data* to *path* (created with exactly *mode* if missing) and fsync it.

    Raises OSError naming *path*.
    """
    created = not path.exists()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, mode)
        try:
            if created:
                os.fchmod(fd, mode)  # as write_file: the umask does not change it
            view = memoryview(data)
            while view:  # a write may take less than asked (a nearly full disk)
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            sync_directory(path.parent)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
