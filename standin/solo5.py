"""The stand-in's view of a unikernel image.

The Solo5 notes (ABI and device manifest) are read by :mod:`core.solo5`,
shared with the client; this module re-exports them.  Fake test images
(``shared/tools/mkfake.py``) additionally carry a tiny stub whose configuration
(mode, exit status, banner) sits at a fixed offset from the entry point;
:func:`fake_stub` reads it so the simulated runner can behave like the image
would under solo5-hvt, and :func:`text_banner` reads the demo images of
:mod:`standin.images`.  Untrusted bytes: only ``None`` or our ParseError.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import ParseError
from core.solo5 import Abi, DeviceKind, Manifest, Target, read_manifest, read_notes
from core.solo5 import unpack as _unpack

__all__ = [
    "Abi",
    "DeviceKind",
    "FakeStub",
    "Manifest",
    "Target",
    "fake_stub",
    "read_manifest",
    "read_notes",
    "text_banner",
]

_FAKE_MARKER = b"fake unikernel image for albatross vectors #"
# mkfake.py's documented stub layout: mode, exit status, banner length, banner.
_STUB_MODE, _STUB_EXIT, _STUB_BLEN, _STUB_BANNER = 0x190, 0x191, 0x192, 0x194


@dataclass(frozen=True, slots=True)
class FakeStub:
    """Behaviour of a mkfake.py image: ``ticker`` (mode 0) or ``exit`` (mode 1)."""

    ticker: bool
    exit_status: int
    banner: str


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
