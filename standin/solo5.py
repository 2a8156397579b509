"""Reading the Solo5 notes of a unikernel image (what solo5-elftool tells albatross).

A Solo5 image is an ELF64 file with two notes owned by ``Solo5``: the ABI note
(``ABI1``: target hvt/spt and ABI version) and the manifest (``MFT1``: the
network and block devices the unikernel expects).  albatrossd refuses to start
an image whose manifest devices differ from the requested ``--net`` and
``--block`` names (vmm_unix.ml ``devices_match``).  The bytes come from a
remote peer, so every offset is bounds-checked and the only error raised is
:class:`~tlsendpoint.errors.ParseError`.

Fake test images (``shared/tools/mkfake.py``) additionally carry a tiny stub
whose configuration (mode, exit status, banner) sits at a fixed offset from
the entry point; :func:`fake_stub` reads it so the simulated runner can behave
like the image would under solo5-hvt.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from tlsendpoint.errors import ParseError

__all__ = [
    "Abi",
    "DeviceKind",
    "FakeStub",
    "Manifest",
    "Target",
    "fake_stub",
    "read_notes",
    "text_banner",
]

_NOTE_OWNER = b"Solo5\x00"
_MFT1 = 0x3154464D
_ABI1 = 0x31494241
_PT_NOTE = 4
_SHT_NOTE = 7
_MFT_ENTRY = 104
_MFT_NAME = 68
_MAX_ENTRIES = 64
_FAKE_MARKER = b"fake unikernel image for albatross vectors #"
# mkfake.py's documented stub layout: mode, exit status, banner length, banner.
_STUB_MODE, _STUB_EXIT, _STUB_BLEN, _STUB_BANNER = 0x190, 0x191, 0x192, 0x194


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
        return ", ".join(f'{kinds[k]} "{n}"' for k, n in self.devices)

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


@dataclass(frozen=True, slots=True)
class FakeStub:
    """Behaviour of a mkfake.py image: ``ticker`` (mode 0) or ``exit`` (mode 1)."""

    ticker: bool
    exit_status: int
    banner: str


def _unpack(fmt: str, data: bytes, offset: int, what: str) -> tuple[int, ...]:
    size = struct.calcsize(fmt)
    if offset < 0 or offset + size > len(data):
        raise ParseError(f"ELF: {what} at offset {offset} lies outside the image")
    return struct.unpack_from(fmt, data, offset)


def _note_ranges(image: bytes) -> list[tuple[int, int]]:
    if len(image) < 64 or image[:4] != b"\x7fELF":
        raise ParseError("ELF: not an ELF file (bad magic)")
    if image[4] != 2 or image[5] != 1:
        raise ParseError("ELF: only 64-bit little-endian images are supported")
    (phoff,) = _unpack("<Q", image, 32, "e_phoff")
    (shoff,) = _unpack("<Q", image, 40, "e_shoff")
    phentsize, phnum, shentsize, shnum = _unpack("<HHHH", image, 54, "header counts")
    ranges: list[tuple[int, int]] = []
    for i in range(min(phnum, 256)):
        base = phoff + i * phentsize
        ptype, _, off, _, _, filesz = _unpack("<IIQQQQ", image, base, "program header")
        if ptype == _PT_NOTE:
            ranges.append((off, filesz))
    if not ranges:
        for i in range(min(shnum, 256)):
            base = shoff + i * shentsize
            _, stype, _, _, off, size = _unpack("<IIQQQQ", image, base, "section header")
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
            namesz, descsz, ntype = _unpack("<III", image, pos, "note header")
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
    target, version = _unpack("<II", abi_desc, 0, "ABI note")
    try:
        abi = Abi(Target(target), version)
    except ValueError:
        raise ParseError(f"unsupported solo5 target {target}") from None
    mft = notes.get(_MFT1)
    if mft is None:
        raise ParseError("ELF: no Solo5 manifest note (.note.solo5.manifest)")
    # The descriptor starts with 4 octets of padding (struct mft is 8-aligned).
    version_mft, count = _unpack("<II", mft, 4, "manifest header")
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
        (kind,) = _unpack("<I", mft, base + _MFT_NAME, "manifest entry type")
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
    return abi, Manifest(tuple(devices))


def fake_stub(image: bytes) -> FakeStub | None:
    """The stub configuration of a mkfake.py image, or ``None`` for any other image."""
    if _FAKE_MARKER not in image:
        return None
    try:
        (entry,) = _unpack("<Q", image, 24, "e_entry")
        (phoff,) = _unpack("<Q", image, 32, "e_phoff")
        ptype, _, off, vaddr, _, _ = _unpack("<IIQQQQ", image, phoff, "program header")
    except ParseError:
        return None
    code = entry - vaddr + off
    if ptype != 1 or code < 0 or code + _STUB_BANNER > len(image):
        return None
    blen = image[code + _STUB_BLEN]
    banner = image[code + _STUB_BANNER : code + _STUB_BANNER + blen]
    return FakeStub(
        ticker=image[code + _STUB_MODE] == 0,
        exit_status=image[code + _STUB_EXIT],
        banner=banner.decode("utf-8", "replace").rstrip("\n"),
    )


def text_banner(image: bytes) -> str | None:
    """The first line at the entry point if it is plain text (:mod:`standin.images` demo images).

    A real unikernel has machine code there, which is not printable text.
    """
    try:
        (entry,) = _unpack("<Q", image, 24, "e_entry")
        (phoff,) = _unpack("<Q", image, 32, "e_phoff")
        ptype, _, off, vaddr, _, _ = _unpack("<IIQQQQ", image, phoff, "program header")
    except ParseError:
        return None
    start = entry - vaddr + off
    if ptype != 1 or not 0 <= start < len(image):
        return None
    raw = image[start : start + 256].split(b"\n", 1)
    if len(raw) != 2 or not raw[0]:
        return None
    try:
        text = raw[0].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() else None
