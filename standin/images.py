"""Tiny Solo5 (hvt) images for demos: a valid ELF carrying the notes albatross checks.

albatross-client and albatrossd read two ELF notes of a unikernel (owner
``Solo5``): the ABI note (``ABI1``: target hvt, ABI version 2) and the
manifest (``MFT1``: version 1, a reserved first entry, then one entry per
network or block device).  This module writes exactly that, in PT_NOTE
program headers, around a short text; there is no machine code, so such an
image only "runs" under the stand-in's simulated runner, which prints a
banner and ticks.  The layout follows Solo5's ``include/mft_abi.h`` and
``elf_abi.h``.  Tests use ``../shared/tools/mkfake.py`` (images that also run
under solo5-hvt); this module exists so that the demo needs nothing outside
the project.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

__all__ = ["make_image"]

_OWNER = b"Solo5\x00"
_NT_ABI = 0x31494241  # "ABI1"
_NT_MFT = 0x3154464D  # "MFT1"
_HVT, _ABI_VERSION = 1, 2
_MFT_BLOCK, _MFT_NET, _MFT_RESERVED_FIRST = 1, 2, 1 << 30
_BASE = 0x100000


def _note(ntype: int, desc: bytes) -> bytes:
    name = _OWNER + b"\x00" * (-len(_OWNER) % 4)
    return struct.pack("<III", len(_OWNER), len(desc), ntype) + name + desc


def _entry(name: str, kind: int) -> bytes:
    raw = name.encode("ascii")
    if len(raw) > 67:
        raise ValueError(f"device name {name!r} is longer than 67 octets")
    # struct mft_entry: char name[68]; uint32 type; union u (16); union b (8); bool attached; pad 7
    return raw.ljust(68, b"\x00") + struct.pack("<I", kind) + bytes(16 + 8 + 1 + 7)


def make_image(
    nets: Sequence[str] = (), blocks: Sequence[str] = (), banner: str = "demo unikernel"
) -> bytes:
    """An hvt image whose manifest lists *nets* and *blocks*."""
    entries = [_entry("", _MFT_RESERVED_FIRST)]
    entries += [_entry(n, _MFT_NET) for n in nets] + [_entry(b, _MFT_BLOCK) for b in blocks]
    # struct mft: 4 octets of padding (8-byte alignment), version, entry count, entries
    mft = _note(_NT_MFT, bytes(4) + struct.pack("<II", 1, len(entries)) + b"".join(entries))
    abi = _note(_NT_ABI, struct.pack("<IIII", _HVT, _ABI_VERSION, 0, 0))
    text = f"{banner}\n".encode()
    header, phdrs = 64, 3 * 56
    off_mft = header + phdrs
    off_abi = off_mft + len(mft)
    off_text = off_abi + len(abi)
    total = off_text + len(text)

    def phdr(ptype: int, flags: int, off: int, size: int) -> bytes:
        return struct.pack("<IIQQQQQQ", ptype, flags, off, _BASE + off, _BASE + off, size, size, 4)

    ident = b"\x7fELF" + bytes((2, 1, 1, 0)) + bytes(8)  # 64-bit, little endian, SysV
    elf = ident + struct.pack(
        "<HHIQQQIHHHHHH", 2, 62, 1, _BASE + off_text, header, 0, 0, header, 56, 3, 64, 0, 0
    )
    elf += phdr(1, 5, 0, total)  # PT_LOAD, R+X, the whole file
    elf += phdr(4, 4, off_mft, len(mft))  # PT_NOTE manifest
    elf += phdr(4, 4, off_abi, len(abi))  # PT_NOTE ABI
    return elf + mft + abi + text
