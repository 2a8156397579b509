"""Reading the Solo5 notes of a unikernel image (what solo5-elftool tells albatross).

A Solo5 image is an ELF64 file with two notes owned by ``Solo5``: the ABI note
(``ABI1``: target hvt/spt and ABI version) and the manifest (``MFT1``: the
network and block devices the unikernel expects).  albatross-client and
albatrossd refuse an image whose manifest devices differ from the requested
``--net`` and ``--block`` names (vmm_unix.ml ``devices_match``).  The bytes
come from a peer or a user, so every offset is bounds-checked and the only
error raised is :class:`~core.errors.ParseError`; structural problems
say ``ELF: ...``, manifest problems ``manifest: ...``.  Pure: no I/O.

Used by the client (checking an image before it is sent) and the daemon
stand-in (checking it before it runs).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from core.errors import ParseError

__all__ = [
    "Abi",
    "DeviceKind",
    "Manifest",
    "Target",
    "read_manifest",
    "read_notes",
    "unpack",
]

_NOTE_OWNER = b"Solo5\x00"
_MFT1 = 0x3154464D
_ABI1 = 0x31494241
_PT_NOTE = 4
_SHT_NOTE = 7
_MFT_ENTRY = 104
_MFT_NAME = 68
_MAX_ENTRIES = 64


class Target(enum.Enum):
    HVT = 1
    SPT = 2


class DeviceKind(enum.Enum):
    BLOCK = 1
    NET = 2


@dataclass(frozen=True, slots=True)
class Abi:
    target: Target
    version: int


@dataclass(frozen=True, slots=True)
class Manifest:
    devices: tuple[tuple[DeviceKind, str], ...]

    def names(self, kind: DeviceKind) -> frozenset[str]:
        return frozenset(n for k, n in self.devices if k is kind)

    def describe(self) -> str:
        """albatross's list: ``net "service0", block "storage"``."""
        kinds = {DeviceKind.NET: "net", DeviceKind.BLOCK: "block"}
        return ", ".join(f"{kinds[k]} {_ocaml_quoted(n)}" for k, n in self.devices)

    def check_devices(self, nets: frozenset[str], blocks: frozenset[str]) -> str | None:
        """The albatross failure text if the requested devices differ, else ``None``."""
        if self.names(DeviceKind.BLOCK) != blocks:
            return (
                "specified block device(s) does not match with manifest. "
                f"Devices present in manifest: {self.describe()}"
            )
        if self.names(DeviceKind.NET) != nets:
            return (
                "specified bridge(s) does not match with the manifest. "
                f"Devices present in manifest: {self.describe()}"
            )
        return None


def _ocaml_quoted(text: str) -> str:
    """OCaml's ``%S``: a double-quoted string with backslashes and quotes escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unpack(fmt: str, data: bytes, offset: int, what: str) -> tuple[int, ...]:
    size = struct.calcsize(fmt)
    if offset < 0 or offset + size > len(data):
        raise ParseError(f"ELF: {what} at offset {offset} lies outside the image")
    return struct.unpack_from(fmt, data, offset)


def _note_ranges(image: bytes) -> list[tuple[int, int]]:
    if len(image) < 64 or image[:4] != b"\x7fELF":
        raise ParseError("ELF: not an ELF file (bad magic)")
    if image[4] != 2 or image[5] != 1:
        raise ParseError("ELF: only 64-bit little-endian images are supported")
    (phoff,) = unpack("<Q", image, 32, "e_phoff")
    (shoff,) = unpack("<Q", image, 40, "e_shoff")
    phentsize, phnum, shentsize, shnum = unpack("<HHHH", image, 54, "header counts")
    ranges: list[tuple[int, int]] = []
    for i in range(min(phnum, 256)):
        base = phoff + i * phentsize
        ptype, _, off, _, _, filesz = unpack("<IIQQQQ", image, base, "program header")
        if ptype == _PT_NOTE:
            ranges.append((off, filesz))
    if not ranges:
        for i in range(min(shnum, 256)):
            base = shoff + i * shentsize
            _, stype, _, _, off, size = unpack("<IIQQQQ", image, base, "section header")
            if stype == _SHT_NOTE:
                ranges.append((off, size))
    return ranges


def _notes(image: bytes) -> dict[int, bytes]:
    """Solo5 note descriptors by type."""
    found: dict[int, bytes] = {}
    for off, size in _note_ranges(image):
        end = off + size
        if end > len(image):
            raise ParseError("ELF: a note segment lies outside the image")
        pos = off
        while pos + 12 <= end:
            namesz, descsz, ntype = unpack("<III", image, pos, "note header")
            name_at = pos + 12
            desc_at = name_at + ((namesz + 3) & ~3)
            next_at = desc_at + ((descsz + 3) & ~3)
            if next_at > end or desc_at + descsz > end:
                raise ParseError("ELF: a note overruns its segment")
            if image[name_at : name_at + namesz] == _NOTE_OWNER:
                found.setdefault(ntype, image[desc_at : desc_at + descsz])
            pos = next_at
    return found


def read_notes(image: bytes) -> tuple[Abi, Manifest]:
    """The ABI and manifest notes of *image*, or :class:`ParseError`."""
    notes = _notes(image)
    abi_desc = notes.get(_ABI1)
    if abi_desc is None:
        raise ParseError("ELF: no Solo5 ABI note (.note.solo5.abi): not a Solo5 unikernel")
    target, version = unpack("<II", abi_desc, 0, "ABI note")
    try:
        abi = Abi(Target(target), version)
    except ValueError:
        raise ParseError(f"unsupported solo5 target {target}") from None
    return abi, _manifest(notes)


def read_manifest(image: bytes) -> Manifest:
    """The manifest note of *image* alone (solo5-elftool ``query_manifest``)."""
    return _manifest(_notes(image))


def _manifest(notes: dict[int, bytes]) -> Manifest:
    mft = notes.get(_MFT1)
    if mft is None:
        raise ParseError("ELF: no Solo5 manifest note (.note.solo5.manifest)")
    # The descriptor starts with 4 octets of padding (struct mft is 8-aligned).
    version_mft, count = unpack("<II", mft, 4, "manifest header")
    if version_mft != 1:
        raise ParseError(f"manifest: unsupported version {version_mft}")
    if not 1 <= count <= _MAX_ENTRIES:
        raise ParseError(f"manifest: {count} entries (expected 1 to {_MAX_ENTRIES})")
    devices: list[tuple[DeviceKind, str]] = []
    for i in range(count):
        base = 12 + i * _MFT_ENTRY
        if base + _MFT_ENTRY > len(mft):
            raise ParseError("manifest: entries overrun the note")
        raw_name = mft[base : base + _MFT_NAME]
        if raw_name[-1] != 0:
            raise ParseError("manifest: device name is not NUL-terminated")
        (kind,) = unpack("<I", mft, base + _MFT_NAME, "manifest entry type")
        if i == 0:
            continue  # RESERVED_FIRST
        try:
            name = raw_name.split(b"\x00", 1)[0].decode("ascii")
        except UnicodeDecodeError:
            raise ParseError("manifest: device name is not ASCII") from None
        try:
            devices.append((DeviceKind(kind), name))
        except ValueError:
            raise ParseError(f"manifest: unknown device type {kind}") from None
    return Manifest(tuple(devices))
