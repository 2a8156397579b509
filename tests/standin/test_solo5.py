"""Reading Solo5 notes from images: every vector image, mkfake variants, and garbage."""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ParseError
from standin.images import make_image as make_demo_image
from standin.solo5 import DeviceKind, Target, fake_stub, read_notes, text_banner
from tests.standin.helpers import make_image
from tests.vectors import CASES

VECTOR_IMAGES = sorted({p.name: p for p in CASES.glob("*/fake_*.hvt")}.values())
EXPECTED_DEVICES = {
    "fake_hello.hvt": (),
    "fake_ticker.hvt": (),
    "fake_net.hvt": ((DeviceKind.NET, "service0"),),
    "fake_blk.hvt": ((DeviceKind.BLOCK, "storage"),),
}


@pytest.mark.parametrize("path", VECTOR_IMAGES, ids=lambda p: p.name)
def test_vector_images(path: Path) -> None:
    abi, manifest = read_notes(path.read_bytes())
    assert abi.target is Target.HVT and abi.version == 2
    assert manifest.devices == EXPECTED_DEVICES[path.name]
    stub = fake_stub(path.read_bytes())
    assert stub is not None and stub.banner.startswith("fake unikernel")
    assert stub.ticker is (path.name in ("fake_ticker.hvt", "fake_blk.hvt"))


def test_mkfake_devices_and_stub(tmp_path: Path) -> None:
    image = make_image(
        tmp_path,
        "x",
        "--net",
        "n0",
        "--block",
        "b0",
        "--mode",
        "exit",
        "--exit-status",
        "7",
        "--banner",
        "hi there",
    )
    _, manifest = read_notes(image)
    assert manifest.names(DeviceKind.NET) == {"n0"}
    assert manifest.names(DeviceKind.BLOCK) == {"b0"}
    assert manifest.describe() == 'net "n0", block "b0"'
    assert manifest.check_devices(frozenset({"n0"}), frozenset({"b0"})) is None
    assert manifest.check_devices(frozenset({"n0"}), frozenset()) is not None
    stub = fake_stub(image)
    assert stub is not None and (stub.ticker, stub.exit_status, stub.banner) == (
        False,
        7,
        "hi there",
    )


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"", "not an ELF file"),
        (b"\x7fELF" + b"\x01\x01" + bytes(58), "64-bit little-endian"),
        (b"\x7fELF\x02\x01" + bytes(58), "no section header string table"),
    ],
)
def test_bad_images(data: bytes, text: str) -> None:
    with pytest.raises(ParseError, match=text):
        read_notes(data)


def _section_headers(image: bytes) -> list[tuple[int, int]]:
    """(file offset of the header, sh_offset) of each section, in order."""
    (shoff,) = struct.unpack_from("<Q", image, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", image, 0x3A)
    return [
        (shoff + i * shentsize, struct.unpack_from("<Q", image, shoff + i * shentsize + 24)[0])
        for i in range(shnum)
    ]


def test_note_pointing_outside_the_image(tmp_path: Path) -> None:
    image = bytearray(make_image(tmp_path, "y"))
    at, _ = _section_headers(bytes(image))[2]  # mkfake.py: "", manifest, abi, ...
    struct.pack_into("<Q", image, at + 24, len(image) + 100)  # .note.solo5.abi sh_offset
    with pytest.raises(ParseError, match="outside the image"):
        read_notes(bytes(image))


def _all_images(tmp_path: Path) -> list[bytes]:
    return [
        make_demo_image(),
        make_demo_image(nets=["service0"], blocks=["storage"]),
        make_image(tmp_path, "m", "--net", "n0", "--block", "b0"),
        *(p.read_bytes() for p in VECTOR_IMAGES),
    ]


def test_notes_are_found_by_section_name_as_albatross_does(tmp_path: Path) -> None:
    """solo5-elftool (lib/elf.ml) never reads program headers: neither do we.  Without
    section headers albatross-client failed ("index out of bounds"): we refuse."""
    for image in _all_images(tmp_path):
        expected = read_notes(image)
        no_phdrs = bytearray(image)
        struct.pack_into("<Q", no_phdrs, 0x20, 0)  # e_phoff = 0 ...
        struct.pack_into("<H", no_phdrs, 0x38, 0)  # ... e_phnum = 0
        assert read_notes(bytes(no_phdrs)) == expected
        no_shdrs = bytearray(image)
        struct.pack_into("<H", no_shdrs, 0x3C, 0)  # e_shnum = 0
        with pytest.raises(ParseError, match="no section header string table"):
            read_notes(bytes(no_shdrs))
        bad_index = bytearray(image)
        struct.pack_into("<H", bad_index, 0x3E, len(_section_headers(image)))  # e_shstrndx
        with pytest.raises(ParseError, match="no section header string table"):
            read_notes(bytes(bad_index))


def test_demo_image_layout_matches_solo5_elftool() -> None:
    """What lib/elf.ml relies on: e_ident padding zero, notes 4-aligned in the file, the
    note names NUL-terminated inside .shstrtab, the descriptors inside their sections."""
    image = make_demo_image(nets=["service0"])
    assert image[9:16] == bytes(7)
    (shstrndx,) = struct.unpack_from("<H", image, 0x3E)
    headers = _section_headers(image)
    table_header, table_at = headers[shstrndx]
    (table_size,) = struct.unpack_from("<Q", image, table_header + 32)
    names = {}
    for at, offset in headers:
        (name_at,) = struct.unpack_from("<I", image, at)
        (size,) = struct.unpack_from("<Q", image, at + 32)
        end = image.index(b"\x00", table_at + name_at)
        assert end < table_at + table_size
        names[image[table_at + name_at : end]] = (offset, size)
    for name, ntype in ((b".note.solo5.manifest", 0x3154464D), (b".note.solo5.abi", 0x31494241)):
        offset, size = names[name]
        assert offset % 4 == 0
        namesz, descsz, found = struct.unpack_from("<III", image, offset)
        assert (namesz, found) == (6, ntype)
        assert image[offset + 12 : offset + 18] == b"Solo5\x00"
        assert 12 + 8 + descsz == size  # name padded to 8, descriptor fills the section


def _mutated_note(section: bytes, at: int, value: bytes) -> bytes:
    image = bytearray(make_demo_image(nets=["service0"]))
    (shstrndx,) = struct.unpack_from("<H", image, 0x3E)
    headers = _section_headers(bytes(image))
    _, table_at = headers[shstrndx]
    for header, offset in headers:
        (name_at,) = struct.unpack_from("<I", image, header)
        if image[table_at + name_at :].startswith(section + b"\x00"):
            image[offset + 20 + at : offset + 20 + at + len(value)] = value  # in the descriptor
            return bytes(image)
    raise AssertionError(section)


@pytest.mark.parametrize(
    ("section", "at", "value", "text"),
    [
        (b".note.solo5.abi", 8, b"\x01", "non-zero reserved"),
        (b".note.solo5.abi", 0, b"\x03", "unsupported solo5 target 3"),
        (b".note.solo5.manifest", 4, b"\x02", "unsupported version 2"),
        (b".note.solo5.manifest", 8, b"\x03", "octets for 3 entries"),
        (b".note.solo5.manifest", 8, b"\x00", "0 entries"),
        (b".note.solo5.manifest", 12, b"x", "non-zero RESERVED_FIRST"),
        (b".note.solo5.manifest", 12 + 104 + 72, b"\x01", "non-zero fields"),
        (b".note.solo5.manifest", 12 + 104 + 96, b"\x01", "non-zero fields"),
        (b".note.solo5.manifest", 12 + 104, b"n" * 68, "not NUL-terminated"),
        (b".note.solo5.manifest", 12 + 104, bytes(68) + b"\x00\x00\x00\x40", "RESERVED_FIRST must"),
        (b".note.solo5.manifest", 12 + 104 + 68, b"\x09", "unknown device type 9"),
    ],
)
def test_descriptor_checks_of_solo5_elftool(
    section: bytes, at: int, value: bytes, text: str
) -> None:
    """lib/solo5_elftool.ml parse_abi / parse_mft refuse these; so do we."""
    with pytest.raises(ParseError, match=text):
        read_notes(_mutated_note(section, at, value))


@settings(max_examples=200)
@given(st.data())
def test_corrupted_images_raise_only_parse_errors(data: st.DataObject) -> None:
    image = bytearray((CASES / "038-create-with-block" / "fake_blk.hvt").read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, 1023))
        image[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(image)))
    with contextlib.suppress(ParseError):
        read_notes(bytes(image[:cut]))
    fake_stub(bytes(image[:cut]))  # never raises


def test_demo_images() -> None:
    image = make_demo_image(nets=["service0"], blocks=["storage"], banner="hello from the demo")
    abi, manifest = read_notes(image)
    assert abi.target is Target.HVT
    assert manifest.devices == ((DeviceKind.NET, "service0"), (DeviceKind.BLOCK, "storage"))
    assert fake_stub(image) is None
    assert text_banner(image) == "hello from the demo"


@pytest.mark.parametrize("path", VECTOR_IMAGES, ids=lambda p: p.name)
def test_machine_code_is_no_banner(path: Path) -> None:
    assert text_banner(path.read_bytes()) is None
