"""Read the Solo5 device manifest of a unikernel image (untrusted bytes, pure).

albatross-client refuses to create a unikernel whose ``--net`` / ``--block``
names differ from the devices in the image's ``.note.solo5.manifest``
(solo5-elftool ``query_manifest``; albatross ``Vmm_unix.devices_match``), and
prints "error during ELF parsing" for a file that is not a Solo5 ELF (case 012).
The notes are read by :mod:`core.solo5` (shared with the daemon stand-in);
every offset is bounds-checked and any inconsistency is a :class:`ParseError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core import solo5
from core.errors import ParseError, UsageError

__all__ = ["Device", "check_devices", "devices_match", "read_manifest"]

ELF_ERROR = "error during ELF parsing"


@dataclass(frozen=True, slots=True)
class Device:
    kind: str  # "block" | "net"
    name: str

    def __str__(self) -> str:
        # OCaml's %S: a double-quoted, escaped string.
        quoted = self.name.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.kind} "{quoted}"'


def read_manifest(image: bytes) -> list[Device]:
    """The devices listed in the image's Solo5 manifest (raises ParseError).

    A file that is not an ELF image at all gets albatross-client's text (case 012).
    """
    try:
        manifest = solo5.read_manifest(image)
    except ParseError as exc:
        if exc.message.startswith("ELF"):
            raise ParseError(ELF_ERROR) from None
        raise
    kinds = {solo5.DeviceKind.BLOCK: "block", solo5.DeviceKind.NET: "net"}
    return [Device(kinds[kind], name) for kind, name in manifest.devices]


def devices_match(devices: list[Device], nets: Iterable[str], blocks: Iterable[str]) -> None:
    """Raise UsageError (albatross's texts) unless the names equal the manifest's, as sets."""
    kinds = {"block": solo5.DeviceKind.BLOCK, "net": solo5.DeviceKind.NET}
    manifest = solo5.Manifest(tuple((kinds[d.kind], d.name) for d in devices))
    problem = manifest.check_devices(frozenset(nets), frozenset(blocks))
    if problem is not None:
        raise UsageError(problem)


def check_devices(image: bytes, nets: Iterable[str], blocks: Iterable[str]) -> None:
    """Parse the manifest of *image* and check the device names (ParseError/UsageError)."""
    devices_match(read_manifest(image), nets, blocks)
