"""Read the Solo5 device manifest of a unikernel image (untrusted bytes, pure).

albatross-client refuses to create a unikernel whose ``--net`` / ``--block``
names differ from the devices in the image's ``.note.solo5.manifest``
(solo5-elftool ``query_manifest``; albatross ``Vmm_unix.devices_match``), and
prints "error during ELF parsing" for a file that is not a Solo5 ELF (case 012).
We walk the ELF64 program headers for a PT_NOTE holding the ``Solo5`` MFT1 note;
every offset is bounds-checked and any inconsistency is a :class:`ParseError`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from tlsendpoint.errors import ParseError, UsageError

__all__ = ["Device", "check_devices", "devices_match", "read_manifest"]

_MFT1 = 0x3154464D
_BLOCK, _NET, _RESERVED_FIRST = 1, 2, 1 << 30
_ENTRY = 104
_MAX_ENTRIES = 64
ELF_ERROR = "error during ELF parsing"


@dataclass(frozen=True, slots=True)
class Device:
    kind: str  # "block" | "net"
    name: str

    def __str__(self) -> str:
        # OCaml's %S: a double-quoted, escaped string.
        quoted = self.name.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.kind} "{quoted}"'


def _unpack(fmt: str, data: bytes, offset: int) -> tuple[int, ...]:
    size = struct.calcsize(fmt)
    if offset < 0 or offset + size > len(data):
        raise ParseError(ELF_ERROR)
    return struct.unpack_from(fmt, data, offset)


def _notes(image: bytes) -> Iterable[tuple[int, bytes, bytes]]:
    if image[:4] != b"\x7fELF" or len(image) < 64 or image[4] != 2 or image[5] != 1:
        raise ParseError(ELF_ERROR)
    (phoff,) = _unpack("<Q", image, 32)
    phentsize, phnum = _unpack("<HH", image, 54)
    if phentsize < 56 or phnum > 256:
        raise ParseError(ELF_ERROR)
    for i in range(phnum):
        ptype, _flags, offset, _vaddr, _paddr, filesz = _unpack(
            "<IIQQQQ", image, phoff + i * phentsize
        )
        if ptype != 4:  # PT_NOTE
            continue
        if offset + filesz > len(image):
            raise ParseError(ELF_ERROR)
        pos, end = offset, offset + filesz
        while pos + 12 <= end:
            namesz, descsz, ntype = _unpack("<III", image, pos)
            name_at = pos + 12
            desc_at = name_at + ((namesz + 3) & ~3)
            nxt = desc_at + ((descsz + 3) & ~3)
            if nxt > end:
                raise ParseError(ELF_ERROR)
            yield ntype, image[name_at : name_at + namesz], image[desc_at : desc_at + descsz]
            pos = nxt


def read_manifest(image: bytes) -> list[Device]:
    """The devices listed in the image's Solo5 manifest (raises ParseError)."""
    for ntype, owner, desc in _notes(image):
        if ntype != _MFT1 or owner.rstrip(b"\0") != b"Solo5":
            continue
        # struct mft is 8-aligned: 4 octets of padding after the 20-octet note header.
        version, count = _unpack("<II", desc, 4)
        if version != 1 or not 1 <= count <= _MAX_ENTRIES or 12 + count * _ENTRY > len(desc):
            raise ParseError("invalid Solo5 manifest")
        devices: list[Device] = []
        for i in range(count):
            entry = desc[12 + i * _ENTRY : 12 + (i + 1) * _ENTRY]
            if entry[67] != 0:
                raise ParseError("invalid Solo5 manifest: device name not terminated")
            name = entry[:68].split(b"\0", 1)[0].decode("ascii", "replace")
            (typ,) = struct.unpack_from("<I", entry, 68)
            if typ == _RESERVED_FIRST and i == 0:
                continue
            if typ == _BLOCK:
                devices.append(Device("block", name))
            elif typ == _NET:
                devices.append(Device("net", name))
            else:
                raise ParseError(f"invalid Solo5 manifest: unknown device type {typ}")
        return devices
    raise ParseError("no Solo5 manifest found in the image")


def devices_match(devices: list[Device], nets: Iterable[str], blocks: Iterable[str]) -> None:
    """Raise UsageError (albatross's texts) unless the names equal the manifest's, as sets."""
    listing = ", ".join(str(d) for d in devices)
    if {d.name for d in devices if d.kind == "block"} != set(blocks):
        raise UsageError(
            "specified block device(s) does not match with manifest. "
            f"Devices present in manifest: {listing}"
        )
    if {d.name for d in devices if d.kind == "net"} != set(nets):
        raise UsageError(
            "specified bridge(s) does not match with the manifest. "
            f"Devices present in manifest: {listing}"
        )


def check_devices(image: bytes, nets: Iterable[str], blocks: Iterable[str]) -> None:
    """Parse the manifest of *image* and check the device names (ParseError/UsageError)."""
    devices_match(read_manifest(image), nets, blocks)
