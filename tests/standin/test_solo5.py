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
        (b"\x7fELF\x02\x01" + bytes(58), "no Solo5 ABI note"),
    ],
)
def test_bad_images(data: bytes, text: str) -> None:
    with pytest.raises(ParseError, match=text):
        read_notes(data)


def test_note_pointing_outside_the_image(tmp_path: Path) -> None:
    image = bytearray(make_image(tmp_path, "y"))
    (phoff,) = struct.unpack_from("<Q", image, 32)
    struct.pack_into("<Q", image, phoff + 56 + 8, len(image) + 100)  # 2nd phdr p_offset
    with pytest.raises(ParseError):
        read_notes(bytes(image))


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
