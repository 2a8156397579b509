"""Reading and writing the stand-in's state at start and after changes (albatrossd.ml ``jump``).

Start-up order as albatrossd: block device files first (their checks never
fail, no policy is restored yet), then the state file - in any layout
albatross 2.7.2 reads (:mod:`core.wire.state`), copied to
``state.started`` once it parsed (``Vmm_unix.backup``) - then the configured
root policy and the stored policies parents first, then the unikernels
(returned, sorted by ``startup``, for the daemon to create).  Writing always
uses the current layout; the file is replaced atomically, the previous one
kept as ``state.bak``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from core.errors import AlbatrossError, ParseError
from core.wire import Name, Policy, UnikernelConfig
from core.wire.state import CURRENT_LAYOUT, decode_state, encode_state
from durable.files import write_file
from standin.errors import Refused
from standin.vmmd import Vmmd

__all__ = ["StandinError", "dump_state", "restore_blocks", "restore_state"]

log = logging.getLogger("standin")


class StandinError(AlbatrossError):
    """The stand-in cannot start (bad directory, unreadable state, socket in use).

    albatross-standin exits 1 for it (:func:`core.errors.exit_code`), like a daemon that
    cannot start under a service manager.
    """

    exit_code = 1


def restore_blocks(vmmd: Vmmd[Any], block_dir: Path) -> None:
    """Register every ``<block_dir>/<name>`` whose size is a non-zero multiple of 1 MB."""
    for path in sorted(block_dir.iterdir()):
        try:
            name = Name.parse(path.name)
            size = path.stat().st_size
        except (ParseError, OSError) as e:
            log.warning("ignoring block file %s: %s", path.name, e)
            continue
        if size == 0 or size % (1 << 20):
            log.warning("ignoring block file %s: size %d is not a multiple of 1 MB", path, size)
            continue
        try:
            vmmd.commit_block(name, size >> 20)
        except Refused as e:
            log.warning("ignoring block file %s: %s", path.name, e)


def restore_state(vmmd: Any, state_file: Path, root: Policy) -> list[tuple[Name, UnikernelConfig]]:
    """Insert the root and stored policies; the stored unikernels in start order."""
    try:
        data: bytes | None = state_file.read_bytes()
    except FileNotFoundError:
        log.warning("no state dump found, starting with no unikernels")
        data = None
    except OSError as e:
        raise StandinError(f"while reading state: {e}") from None
    policies: list[tuple[Name, Policy]] = []
    unikernels: list[tuple[Name, UnikernelConfig]] = []
    if data is not None:
        try:
            state = decode_state(data)
        except ParseError as e:
            raise StandinError(f"couldn't parse state {state_file}: {e}") from None
        policies = list(state.policies)
        unikernels = [(u.name, u.config) for u in state.unikernels]
        log.info("restored %d unikernels and %d policies", len(unikernels), len(policies))
        if state.layout != CURRENT_LAYOUT:
            log.warning(
                "state %s has the older albatross layout [%d]; it is rewritten in the current"
                " layout [%d] on the next change",
                state_file,
                state.layout,
                CURRENT_LAYOUT,
            )
        _backup(state_file, data)
    stored_root = dict(policies).get(Name())
    if stored_root is not None and stored_root != root:
        log.warning("replacing stored root policy %s with discovered %s", stored_root, root)
    restored = [(Name(), root)] + [(n, p) for n, p in policies if not n.is_root]
    for name, policy in sorted(restored, key=lambda item: item[0].path):
        try:
            vmmd.resources.insert_policy(name.path, policy)
        except Refused as e:
            raise StandinError(
                f"policy restore error: couldn't insert {policy} for {name}: {e}"
            ) from None
    return sorted(unikernels, key=lambda item: 50 if item[1].startup is None else item[1].startup)


def _backup(state_file: Path, data: bytes) -> None:
    """``state.started``: the file as it was at start (albatrossd copies it, then logs)."""
    try:
        state_file.with_suffix(".started").write_bytes(data)
    except OSError as e:
        log.error("backing up state failed: %s", e)
    else:
        log.info("backing up state to %s", state_file.with_suffix(".started").name)


def dump_state(vmmd: Vmmd[Any], state_file: Path) -> None:
    resources = vmmd.resources
    data = encode_state(
        [(n, u.config) for n, u in resources.unikernels.all()], resources.policies.all()
    )
    try:
        write_file(state_file, data, mode=0o644, backup=state_file.with_suffix(".bak"))
    except OSError as e:
        log.error("failed to dump state: %s", e)
