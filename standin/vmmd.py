"""albatrossd's command handling (vmm_vmmd.ml) as pure code.

:meth:`Vmmd.handle` takes one decoded request and returns an *outcome*: a
reply to send (and whether the connection stays open), or an action the
shell must carry out with the runner - create, wait for an exit, wait then
create, stream a block device in or out.  Nothing here awaits, opens files or
reads the clock; the shell passes the time and the results in.

The waiter bookkeeping follows albatross: a unikernel with restart-on-failure
(or an injected ``--name``) registers a waiter; when it exits, the name moves
to ``restarting`` and the waiter decides; a destroy meanwhile removes the name
from ``restarting`` (fix for albatross #39).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Generic, TypeVar

from core.errors import ParseError
from core.wire import (
    BlockAdd,
    BlockAddOld,
    BlockDeviceEntry,
    BlockDeviceList,
    BlockDump,
    BlockDumpOld,
    BlockInfo,
    BlockInfoRecord,
    BlockRemove,
    BlockSet,
    BlockSetOld,
    Failure,
    Header,
    Name,
    NetInfoRecord,
    Payload,
    Policy,
    PolicyAdd,
    PolicyInfo,
    PolicyList,
    PolicyRemove,
    Quit,
    StatsInitial,
    StringReply,
    Typ,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelGet,
    UnikernelImage,
    UnikernelInfo,
    UnikernelInfoList,
    UnikernelInfoRecord,
    UnikernelRestart,
)
from core.wire.compress import compress, decompress
from standin.errors import Refused
from standin.outcomes import (
    AddBlock,
    Create,
    DumpBlock,
    Outcome,
    Prepared,
    ReadBlock,
    RemoveBlock,
    Reply,
    SetBlock,
    StatsChannel,
    Wait,
    WaitAndCreate,
    WriteBlock,
)
from standin.resources import Resources, Unikernel, block_name
from standin.solo5 import read_notes

__all__ = ["MAX_IMAGE", "Vmmd", "bytes_of_mb", "should_restart"]

W = TypeVar("W")

#: Largest (decompressed) unikernel image we accept.
MAX_IMAGE = 64 * 1024 * 1024


def should_restart(config: UnikernelConfig, exit_code: int | None) -> bool:
    """albatross's decision (vmm_core.ml ``should_restart``); ``None`` = killed by a signal."""
    behaviour = config.fail_behaviour
    if isinstance(behaviour, Quit) or exit_code is None:
        return False
    if exit_code == 1 or 60 <= exit_code <= 64:
        return False
    return not behaviour.exit_codes or exit_code in behaviour.exit_codes


def bytes_of_mb(size: int) -> int:
    """``Vmm_unix.bytes_of_mb`` with its overflow text (OCaml 63-bit ints)."""
    res = (size << 20) & ((1 << 63) - 1)
    if res >= 1 << 62:
        res -= 1 << 63
    if res > size:
        return res
    raise Refused("overflow while computing bytes")


class Vmmd(Generic[W]):
    """The daemon's state: resources, counters, waiters and the restarting set.

    A waiter (type ``W``, supplied by the shell) is woken when its unikernel
    exits.  Waiters this code drops (replaced or cancelled) are appended to
    :attr:`dropped`; the shell must wake them with "no exit".
    """

    def __init__(
        self, resources: Resources | None = None, host_bridges: frozenset[str] = frozenset()
    ) -> None:
        self.resources = resources if resources is not None else Resources()
        self.host_bridges = host_bridges
        self.console_counter = 1
        self.stats_counter = 1
        self.waiters: dict[str, W] = {}
        self.restarting: set[str] = set()
        self.dropped: list[W] = []
        self.dirty = False  # the policies changed: the shell dumps the state

    # -- dispatch -----------------------------------------------------------

    def handle(self, header: Header, payload: Payload) -> Outcome:
        """One request; albatross's failure texts come back as ``Reply(Failure)``."""
        handler = _HANDLERS.get(type(payload))
        try:
            if handler is None:
                raise Refused("unknown command")
            return handler(self, header.name, payload)
        except Refused as e:
            return Reply(Failure(e.message))

    # -- policies -----------------------------------------------------------

    def _policy_add(self, name: Name, cmd: PolicyAdd) -> Outcome:
        if self.resources.find_policy(name.path) == cmd.policy:
            return Reply(StringReply("no modification of policy"), keep_open=True)
        self.resources.insert_policy(name.path, cmd.policy)
        self.dirty = True
        return Reply(StringReply("added policy"), keep_open=True)

    def _policy_remove(self, name: Name, _cmd: PolicyRemove) -> Outcome:
        self.resources.remove_policy(name.path)
        self.dirty = True
        return Reply(StringReply("removed policy"))

    def _policy_info(self, name: Name, _cmd: PolicyInfo) -> Outcome:
        found: tuple[tuple[Name, Policy], ...] = tuple(
            self.resources.policies.fold_consed(name.path)
        )
        return Reply(PolicyList(found))

    # -- unikernels ---------------------------------------------------------

    def info_record(self, name: Name, u: Unikernel) -> UnikernelInfoRecord:
        """``Unikernel.info``: the config plus digest, start time, block sizes and MACs."""
        cfg = u.config
        blocks = frozenset(
            BlockInfoRecord(
                b.name,
                b.host_device,
                512 if b.sector_size is None else b.sector_size,
                self._block_size(block_name(name, b.host_device)),
            )
            for b in cfg.blocks
        )
        nets = sorted(cfg.bridges, key=lambda n: n.name)
        bridges = frozenset(
            NetInfoRecord(n.name, n.host_bridge, mac)
            for n, (_, mac) in zip(nets, u.taps, strict=False)
        )
        return UnikernelInfoRecord(
            typ=cfg.typ,
            fail_behaviour=cfg.fail_behaviour,
            cpuids=cfg.cpuids,
            memory=cfg.memory,
            digest=u.digest,
            startup=cfg.startup,
            blocks=blocks,
            bridges=bridges,
            argv=cfg.argv,
            started=u.started,
            numcpus=cfg.numcpus,
            linux_boot_partition=cfg.linux_boot_partition,
        )

    def _block_size(self, name: Name) -> int:
        state = self.resources.find_block(name)
        return 0 if state is None else state.size  # albatross: 0 if the device is gone

    def _info(self, name: Name, cmd: UnikernelInfo) -> Outcome:
        if name.is_path:
            entries = self.resources.unikernels.fold_consed(name.path)
        else:
            u = self.resources.find_unikernel(name)
            entries = [] if u is None else [(name, u)]
        records = tuple((n, self.info_record(_full(name, n), u)) for n, u in entries)
        return Reply(UnikernelInfoList(records, cmd.variant))

    def _get(self, name: Name, cmd: UnikernelGet) -> Outcome:
        u = self.resources.find_unikernel(name)
        if u is None:
            raise Refused("get: no unikernel found")
        cfg = u.config
        if cmd.level < 0:
            # albatross hands a negative level to the zlib encoder, which rejects it
            # (decompress: invalid_arg); the stand-in answers with a Failure instead.
            raise Refused(f"get: compression level {cmd.level} is not within 0..9")
        if cfg.compressed:
            if cmd.level > 0:
                return Reply(UnikernelImage(True, cfg.image))
            return Reply(UnikernelImage(False, _uncompress(cfg.image)))
        if cmd.level == 0:
            return Reply(UnikernelImage(False, cfg.image))
        return Reply(UnikernelImage(True, compress(cfg.image, min(cmd.level, 9))))

    def _create(self, name: Name, cmd: UnikernelCreate) -> Outcome:
        if not cmd.force:
            return Create(name, cmd.config)
        trial = self.resources.copy()
        if trial.find_unikernel(name) is not None:
            trial.remove_unikernel(name)
        trial.check_unikernel(name, cmd.config)
        if self.resources.find_unikernel(name) is None:
            # albatross calls stop_create here but ignores the state it returns, so a
            # pending restart is NOT cancelled (it later fails as "already running").
            return Create(name, cmd.config)
        return WaitAndCreate(name, cmd.config)

    def _restart(self, name: Name, cmd: UnikernelRestart) -> Outcome:
        u = self.resources.find_unikernel(name)
        if u is None:
            return self.stop_create(name)
        trial = self.resources.copy()
        trial.remove_unikernel(name)
        trial.check_unikernel(name, u.config)
        config = u.config
        if cmd.arguments is not None:
            a = cmd.arguments
            config = replace(
                config,
                fail_behaviour=a.fail_behaviour,
                startup=a.startup,
                add_name=a.add_name,
                cpuids=a.cpuids,
                memory=a.memory,
                blocks=a.blocks,
                bridges=a.bridges,
                argv=a.argv,
                numcpus=a.numcpus,
                linux_boot_partition=a.linux_boot_partition,
            )
        image = _uncompress(config.image) if config.compressed else config.image
        _check_manifest(image, config)
        return WaitAndCreate(name, config)

    def _destroy(self, name: Name, _cmd: UnikernelDestroy) -> Outcome:
        if self.resources.find_unikernel(name) is None:
            return self.stop_create(name)
        return Wait(name)

    # -- block devices ------------------------------------------------------

    def _block_info(self, name: Name, _cmd: BlockInfo) -> Outcome:
        if name.is_path:
            entries = self.resources.blocks.fold_consed(name.path)
        else:
            state = self.resources.find_block(name)
            entries = [] if state is None else [(name, state)]
        return Reply(
            BlockDeviceList(tuple(BlockDeviceEntry(n, s.size, s.active) for n, s in entries))
        )

    def _block_add(self, name: Name, cmd: BlockAdd) -> Outcome:
        if self.resources.find_block(name) is not None:
            raise Refused("block device with same name already exists")
        self.resources.check_block(name, cmd.size)
        bytes_of_mb(cmd.size)
        return AddBlock(name, cmd.size)

    def commit_block(self, name: Name, size: int) -> None:
        self.resources.insert_block(name, size)

    def forget_block(self, name: Name) -> None:
        self.resources.remove_block(name)

    def _block_remove(self, name: Name, _cmd: BlockRemove) -> Outcome:
        state = self.resources.find_block(name)
        if state is None:
            raise Refused("remove block: not found")
        if state.active:
            raise Refused("remove block: is in use")
        return RemoveBlock(name)

    def _block_set(self, name: Name, cmd: BlockSet) -> Outcome:
        state = self.resources.find_block(name)
        if state is None:
            raise Refused("set block: not found")
        if state.active:
            raise Refused("set block: is in use")
        return SetBlock(name, cmd.compressed, bytes_of_mb(state.size))

    def _block_dump(self, name: Name, cmd: BlockDump) -> Outcome:
        state = self.resources.find_block(name)
        if state is None:
            raise Refused("dump block: not found")
        if state.active:
            raise Refused("dump block: is in use")
        return DumpBlock(name, cmd.level)

    # -- legacy block commands (old_block_add/set/dump, data inline) ----------

    def _block_add_old(self, name: Name, cmd: BlockAddOld) -> Outcome:
        if self.resources.find_block(name) is not None:
            raise Refused("block device with same name already exists")
        self.resources.check_block(name, cmd.size)
        size_bytes = bytes_of_mb(cmd.size)
        if cmd.data is None:
            return AddBlock(name, cmd.size)
        data = _inflate(cmd.data, size_bytes) if cmd.compressed else cmd.data
        if len(data) > size_bytes:
            raise Refused("data exceeds block size")
        return AddBlock(name, cmd.size, data)

    def _block_set_old(self, name: Name, cmd: BlockSetOld) -> Outcome:
        state = self.resources.find_block(name)
        if state is None:
            raise Refused("set block: not found")
        if state.active:
            raise Refused("set block: is in use")
        size_bytes = bytes_of_mb(state.size)
        data = _inflate(cmd.data, size_bytes) if cmd.compressed else cmd.data
        if len(data) > size_bytes:
            raise Refused("data exceeds block size")
        return WriteBlock(name, state.size, data)

    def _block_dump_old(self, name: Name, cmd: BlockDumpOld) -> Outcome:
        state = self.resources.find_block(name)
        if state is None:
            raise Refused("dump block: not found")
        if state.active:
            raise Refused("dump block: is in use")
        return ReadBlock(name, cmd.level)

    def _stats_initial(self, _name: Name, _cmd: StatsInitial) -> Outcome:
        return StatsChannel()

    # -- create, exit, restart ----------------------------------------------

    def prepare(self, name: Name, config: UnikernelConfig) -> Prepared:
        """``handle_create`` up to the console step: checks, decompression, manifest."""
        if self.resources.find_unikernel(name) is not None:
            raise Refused("Unikernel with same name is already running")
        self.resources.check_unikernel(name, config)
        if config.typ is not Typ.SOLO5:
            raise Refused("this stand-in runs solo5 unikernels only (no bhyve)")
        image = _uncompress(config.image) if config.compressed else config.image
        digest = hashlib.sha256(image).digest()
        _check_manifest(image, config)
        for net in sorted(config.bridges, key=lambda n: n.name):
            if net.host_bridge not in self.host_bridges:
                raise Refused(f"interface {net.host_bridge} does not exist")
        self.console_counter += 1
        return Prepared(image, digest)

    def insert(self, name: Name, unikernel: Unikernel) -> None:
        """The success continuation: re-check, then account the running unikernel."""
        self.resources.check_unikernel(name, unikernel.config)
        self.resources.insert_unikernel(name, unikernel)
        self.stats_counter += 1

    def register(self, name: Name, waiter: W) -> None:
        """``register``: wait for *name*'s exit, replacing (dropping) any earlier waiter."""
        old = self.waiters.get(str(name))
        if old is not None:
            self.dropped.append(old)
        self.waiters[str(name)] = waiter

    def register_restart(self, name: Name, waiter: W) -> bool:
        """``register_restart``: like :meth:`register` but never replaces a waiter."""
        if str(name) in self.waiters:
            return False
        self.waiters[str(name)] = waiter
        return True

    def exited(self, name: Name) -> W | None:
        """``handle_shutdown`` + ``waiter``: free the resources; the waiter to wake, if any."""
        with contextlib.suppress(Refused):
            self.resources.remove_unikernel(name)
        self.stats_counter += 1
        waiter = self.waiters.pop(str(name), None)
        if waiter is not None:
            self.restarting.add(str(name))
        return waiter

    def may_restart(self, name: Name) -> bool:
        key = str(name)
        if key in self.restarting:
            self.restarting.discard(key)
            return True
        return False

    def stop_create(self, name: Name) -> Reply:
        """Destroy of a name that is not running: cancel its waiter or pending restart."""
        waiter = self.waiters.pop(str(name), None)
        if waiter is not None:
            self.dropped.append(waiter)
            return Reply(StringReply("destroyed: removed waiter"))
        if self.may_restart(name):
            return Reply(StringReply("destroyed: removed from restarting"))
        raise Refused("destroy: not found")

    def running(self) -> list[tuple[Name, Unikernel]]:
        return self.resources.unikernels.all()


def _full(request: Name, relative: Name) -> Name:
    return relative.under(request.path) if request.is_path else request


def _uncompress(image: bytes) -> bytes:
    try:
        return decompress(image, MAX_IMAGE)
    except ParseError as e:
        raise Refused(f"failed to uncompress: {e.message}") from None


def _inflate(data: bytes, size_bytes: int) -> bytes:
    """Inline block data (legacy commands), never more than the device or :data:`MAX_IMAGE`."""
    limit = min(size_bytes, MAX_IMAGE)
    try:
        return decompress(data, limit)
    except ParseError as e:
        if "beyond" not in e.message:
            raise Refused(e.message) from None
        if limit < size_bytes:  # the stand-in's own bound, not albatross's
            raise Refused(f"inline data inflates beyond {MAX_IMAGE} octets") from None
        raise Refused("data exceeds block size") from None


def _check_manifest(image: bytes, config: UnikernelConfig) -> None:
    try:
        _abi, manifest = read_notes(image)
    except ParseError as e:
        raise Refused(e.message) from None
    nets = frozenset(n.name for n in config.bridges)
    blocks = frozenset(b.name for b in config.blocks)
    problem = manifest.check_devices(nets, blocks)
    if problem is not None:
        raise Refused(problem)


_HANDLERS: dict[type[Any], Callable[[Vmmd[Any], Name, Any], Outcome]] = {
    PolicyAdd: Vmmd._policy_add,
    PolicyRemove: Vmmd._policy_remove,
    PolicyInfo: Vmmd._policy_info,
    UnikernelInfo: Vmmd._info,
    UnikernelGet: Vmmd._get,
    UnikernelCreate: Vmmd._create,
    UnikernelRestart: Vmmd._restart,
    UnikernelDestroy: Vmmd._destroy,
    BlockInfo: Vmmd._block_info,
    BlockAdd: Vmmd._block_add,
    BlockRemove: Vmmd._block_remove,
    BlockSet: Vmmd._block_set,
    BlockDump: Vmmd._block_dump,
    BlockAddOld: Vmmd._block_add_old,
    BlockSetOld: Vmmd._block_set_old,
    BlockDumpOld: Vmmd._block_dump_old,
    StatsInitial: Vmmd._stats_initial,
}
