"""Tiny Solo5 (hvt) images for demos: a valid ELF carrying the notes albatross checks.

albatross-client and albatrossd read two ELF notes of a unikernel (owner
``Solo5``): the ABI note (``ABI1``: target hvt, ABI version 2) and the
manifest (``MFT1``: version 1, a reserved first entry, then one entry per
network or block device).  They find them by section name (solo5-elftool's
lib/elf.ml reads the section headers and ``.shstrtab``; an image without
section headers made albatross-client fail with "index out of bounds"), so
this module writes both sections, as well as PT_NOTE program headers (as the
Solo5 linker scripts do), around a short text; there is no machine code, so such an
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
_SHT_PROGBITS, _SHT_STRTAB, _SHT_NOTE = 1, 3, 7
_SHF_ALLOC, _SHF_EXECINSTR = 2, 4


def _note(ntype: int, desc: bytes) -> bytes:
    name = _OWNER + b"\x00" * (-len(_OWNER) % 4)
    return struct.pack("<III", len(_OWNER), len(desc), ntype) + name + desc


def _entry(name: str, kind: int) -> bytes:
    raw = name.encode("ascii")
    if len(raw) > 67:
        raise ValueError(f"device name {name!r} is longer than 67 octets")
    # struct mft_entry: char name[68]; uint32 type; union u (16); union b (8); bool attached; pad 7
    return raw.ljust(68, b"\x00") + struct.pack("<I", kind) + bytes(16 + 8 + 1 + 7)


def _section(name_at: int, stype: int, flags: int, off: int, size: int, align: int) -> bytes:
    # Elf64_Shdr: name, type, flags, addr, offset, size, link, info, addralign, entsize
    addr = _BASE + off if flags & _SHF_ALLOC else 0
    return struct.pack("<IIQQQQIIQQ", name_at, stype, flags, addr, off, size, 0, 0, align, 0)


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
    names = [b"", b".note.solo5.manifest", b".note.solo5.abi", b".text", b".shstrtab"]
    shstrtab = b"\x00".join(names) + b"\x00"
    name_at = [shstrtab.index(n + b"\x00") if n else 0 for n in names]
    header, phdrs = 64, 3 * 56
    off_mft = header + phdrs  # 232: notes start 4-aligned, as solo5-elftool's padding assumes
    off_abi = off_mft + len(mft)
    off_text = off_abi + len(abi)
    loaded = off_text + len(text)
    off_strtab = loaded
    off_shdrs = off_strtab + len(shstrtab) + (-(off_strtab + len(shstrtab)) % 8)

    def phdr(ptype: int, flags: int, off: int, size: int) -> bytes:
        return struct.pack("<IIQQQQQQ", ptype, flags, off, _BASE + off, _BASE + off, size, size, 4)

    ident = b"\x7fELF" + bytes((2, 1, 1, 0)) + bytes(8)  # 64-bit, little endian, SysV
    elf = ident + struct.pack(
        "<HHIQQQIHHHHHH",
        2, 62, 1, _BASE + off_text, header, off_shdrs, 0, header, 56, 3, 64, len(names), 4,
    )  # fmt: skip
    elf += phdr(1, 5, 0, loaded)  # PT_LOAD, R+X, headers, notes and text
    elf += phdr(4, 4, off_mft, len(mft))  # PT_NOTE manifest
    elf += phdr(4, 4, off_abi, len(abi))  # PT_NOTE ABI
    body = elf + mft + abi + text + shstrtab
    body += bytes(off_shdrs - len(body))
    # Section headers: albatross (solo5-elftool lib/elf.ml) finds the notes by section
    # name through .shstrtab, and fails on an image without them.
    return body + b"".join((
        bytes(64),  # SHN_UNDEF
        _section(name_at[1], _SHT_NOTE, _SHF_ALLOC, off_mft, len(mft), 8),
        _section(name_at[2], _SHT_NOTE, _SHF_ALLOC, off_abi, len(abi), 4),
        _section(name_at[3], _SHT_PROGBITS, _SHF_ALLOC | _SHF_EXECINSTR, off_text, len(text), 1),
        _section(name_at[4], _SHT_STRTAB, 0, off_strtab, len(shstrtab), 1),
    ))  # fmt: skip
