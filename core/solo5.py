"""Reading the Solo5 notes of a unikernel image (what solo5-elftool tells albatross).

A Solo5 image is an ELF64 file with two notes owned by ``Solo5``: the ABI note
(``ABI1``: target hvt/spt and ABI version, section ``.note.solo5.abi``) and the
manifest (``MFT1``: the network and block devices the unikernel expects, section
``.note.solo5.manifest``).  They are found and checked as solo5-elftool (which
albatross uses) does, in lib/elf.ml and lib/solo5_elftool.ml: by section name,
never through program headers, with its checks on the descriptors; an image
albatross cannot read is refused here too.  albatross-client and
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
_MFT_ENTRY = 104
_MFT_NAME = 68
_MAX_ENTRIES = 64
_RESERVED_FIRST = 1 << 30


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


# ELF64 header fields solo5-elftool reads (lib/elf.ml read_header): e_shoff,
# e_shentsize, e_shnum, e_shstrndx; of a section header, sh_name, sh_offset, sh_size.
_SECTION_MANIFEST = b".note.solo5.manifest"
_SECTION_ABI = b".note.solo5.abi"
_MAX_SECTIONS = 4096  # e_shnum is 16 bits; a bound on our work for hostile headers


def _sections(image: bytes) -> dict[bytes, tuple[int, int]]:
    """Section name -> (offset, size), read as solo5-elftool reads them (lib/elf.ml).

    albatross finds the notes by section name, through the section header string
    table; it never looks at program headers.  Every section's name must be readable
    (``read_sections`` names them all); a missing table is what crashed albatross-client
    on images without section headers (``sections.(e_shstrndx)``: index out of bounds),
    so it is our error here.  The first section of a name wins (``Array.find_opt``).
    """
    if len(image) < 64 or image[:4] != b"\x7fELF":
        raise ParseError("ELF: not an ELF file (bad magic)")
    if image[4] != 2 or image[5] != 1:
        raise ParseError("ELF: only 64-bit little-endian images are supported")
    if any(image[9:16]):
        raise ParseError("ELF: non-zero padding in e_ident")
    (shoff,) = unpack("<Q", image, 0x28, "e_shoff")
    shentsize, shnum, shstrndx = unpack("<HHH", image, 0x3A, "section header counts")
    if shnum == 0 or shstrndx >= shnum:
        raise ParseError(
            f"ELF: no section header string table (e_shnum {shnum}, e_shstrndx {shstrndx}):"
            " albatross finds the Solo5 notes by section name"
        )
    headers = []
    for i in range(min(shnum, _MAX_SECTIONS)):
        base = shoff + i * shentsize
        (name_at,) = unpack("<I", image, base, "section header")
        offset, size = unpack("<QQ", image, base + 24, "section header")
        headers.append((name_at, offset, size))
    _, table_at, table_size = headers[shstrndx]
    found: dict[bytes, tuple[int, int]] = {}
    for name_at, offset, size in headers:
        start = table_at + name_at
        limit = min(start + table_size - name_at, len(image))  # c_string's maxlen
        end = image.find(b"\x00", start, max(start, limit))
        if name_at > table_size or end < 0:
            raise ParseError("ELF: a section name is not in the string table")
        found.setdefault(image[start:end], (offset, size))
    return found


def _note(image: bytes, section: tuple[int, int] | None, ntype: int) -> bytes | None:
    """The descriptor of the Solo5 note of *ntype* in *section* (lib/elf.ml ``desc``)."""
    if section is None:
        return None
    offset, size = section
    if size < 12:
        raise ParseError("ELF: a Solo5 note section is shorter than a note header")
    namesz, descsz, found_type = unpack("<III", image, offset, "note header")
    owner = image[offset + 12 : offset + 12 + namesz]
    if found_type != ntype or owner != _NOTE_OWNER:
        return None
    desc_at = offset + 12 + namesz
    desc_at += -desc_at % 4  # padded to 4 octets in the file
    if desc_at + descsz > len(image):
        raise ParseError("ELF: a note lies outside the image")
    return image[desc_at : desc_at + descsz]


def read_notes(image: bytes) -> tuple[Abi, Manifest]:
    """The ABI and manifest notes of *image*, or :class:`ParseError`."""
    sections = _sections(image)
    abi_desc = _note(image, sections.get(_SECTION_ABI), _ABI1)
    if abi_desc is None:
        raise ParseError("ELF: no Solo5 ABI note (.note.solo5.abi): not a Solo5 unikernel")
    return _abi(abi_desc), _manifest(_note(image, sections.get(_SECTION_MANIFEST), _MFT1))


def read_manifest(image: bytes) -> Manifest:
    """The manifest note of *image* alone (solo5-elftool ``query_manifest``)."""
    return _manifest(_note(image, _sections(image).get(_SECTION_MANIFEST), _MFT1))


def _abi(desc: bytes) -> Abi:
    """solo5-elftool ``parse_abi``: four 32-bit words, the last two zero."""
    if len(desc) != 16:
        raise ParseError(f"abi manifest size mismatch ({len(desc)} octets, expected 16)")
    target, version, reserved0, reserved1 = struct.unpack("<IIII", desc)
    if reserved0 or reserved1:
        raise ParseError("ABI note: non-zero reserved fields")
    try:
        return Abi(Target(target), version)
    except ValueError:
        raise ParseError(f"unsupported solo5 target {target}") from None


def _manifest(mft: bytes | None) -> Manifest:
    """solo5-elftool ``parse_mft``: exactly *count* entries, RESERVED_FIRST first."""
    if mft is None:
        raise ParseError("ELF: no Solo5 manifest note (.note.solo5.manifest)")
    if len(mft) < 12 + _MFT_ENTRY:
        raise ParseError("manifest: too small")
    # The descriptor starts with 4 octets of padding (struct mft is 8-aligned).
    version_mft, count = struct.unpack_from("<II", mft, 4)
    if version_mft != 1:
        raise ParseError(f"manifest: unsupported version {version_mft}")
    if not 1 <= count <= _MAX_ENTRIES:
        raise ParseError(f"manifest: {count} entries (expected 1 to {_MAX_ENTRIES})")
    if len(mft) != 12 + count * _MFT_ENTRY:
        raise ParseError(f"manifest: {len(mft)} octets for {count} entries")
    devices: list[tuple[DeviceKind, str]] = []
    for i in range(count):
        kind, name = _entry(mft[12 + i * _MFT_ENTRY : 12 + (i + 1) * _MFT_ENTRY])
        if (kind == _RESERVED_FIRST) != (i == 0):
            raise ParseError("manifest: RESERVED_FIRST must be the first entry, and only it")
        if i:
            devices.append((DeviceKind(kind), name))
    return Manifest(tuple(devices))


def _entry(raw: bytes) -> tuple[int, str]:
    """One ``struct mft_entry`` (104 octets): name[68], type, u[16], b[8], attached, pad."""
    name_raw = raw[:_MFT_NAME]
    (kind,) = struct.unpack_from("<I", raw, _MFT_NAME)
    if b"\x00" not in name_raw:
        raise ParseError("manifest: device name is not NUL-terminated")
    if any(raw[72:96]) or raw[96]:
        raise ParseError("manifest: non-zero fields in an entry (u, b or attached)")
    if kind == _RESERVED_FIRST:
        if any(name_raw):
            raise ParseError("manifest: non-zero RESERVED_FIRST")
        return kind, ""
    if kind not in (DeviceKind.BLOCK.value, DeviceKind.NET.value):
        raise ParseError(f"manifest: unknown device type {kind}")
    try:
        return kind, name_raw.split(b"\x00", 1)[0].decode("ascii")
    except UnicodeDecodeError:
        raise ParseError("manifest: device name is not ASCII") from None
