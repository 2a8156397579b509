"""albatross state files of every layout, built by hand from the albatross 2.7.2 grammar.

These builders transcribe ``src/vmm_asn.ml`` (``v0_unikernel_config`` ...
``unikernel_config``, ``policy``, ``trie``, ``state``) directly into TLVs, apart
from the codec under test, so a field out of order or a wrong tag in
:mod:`core.wire.state` shows up as a failing test.  Only the TLV writer
of our DER module is shared.  ``DUMPS`` holds one dump per alternative.
"""

from __future__ import annotations

from core.wire.der import tlv

MAC = bytes.fromhex("008041aabbcc")


def seq(*parts: bytes) -> bytes:
    return tlv(0x30, b"".join(parts))


def set_of(*parts: bytes) -> bytes:
    """SET OF as albatross writes it: sorted by encoding (asn1-combinators, DER)."""
    return tlv(0x31, b"".join(sorted(parts)))


def explicit(n: int, inner: bytes) -> bytes:
    return tlv(0xA0 | n, inner)


def utf8(text: str) -> bytes:
    return tlv(0x0C, text.encode())


def integer(n: int) -> bytes:
    return tlv(0x02, n.to_bytes(((n if n >= 0 else ~n).bit_length() + 8) // 8, "big", signed=True))


def boolean(value: bool) -> bytes:
    return tlv(0x01, b"\xff" if value else b"\x00")


def octets(data: bytes) -> bytes:
    return tlv(0x04, data)


NULL = tlv(0x05, b"")
SOLO5 = explicit(0, NULL)
BHYVE = explicit(1, NULL)
QUIT = explicit(0, NULL)


def restart(*codes: int) -> bytes:
    return explicit(1, set_of(*(integer(c) for c in codes)))


def opt(value: bytes | None) -> bytes:
    return b"" if value is None else value


def opt_utf8(text: str | None) -> bytes:
    return b"" if text is None else utf8(text)


def opt_integer(n: int | None) -> bytes:
    return b"" if n is None else integer(n)


def strings(items: list[str]) -> bytes:
    return seq(*(utf8(s) for s in items))


def v0_config(
    cpu: int,
    memory: int,
    image_tag: int,
    image: bytes,
    block: str | None = None,
    networks: list[str] | None = None,
    argv: list[str] | None = None,
) -> bytes:
    """``v0_unikernel_config``: no tags on the optional lists; image [0]/[1]/[2]."""
    return seq(
        integer(cpu),
        integer(memory),
        opt_utf8(block),
        opt(None if networks is None else strings(networks)),
        explicit(image_tag, octets(image)),
        opt(None if argv is None else strings(argv)),
    )


def _head(typ: bytes, compressed: bool, image: bytes, fail: bytes) -> bytes:
    return typ + boolean(compressed) + octets(image) + fail


def _argv(argv: list[str] | None) -> bytes:
    return opt(None if argv is None else explicit(2, strings(argv)))


def v1_config(
    typ: bytes,
    compressed: bool,
    image: bytes,
    fail: bytes,
    cpuid: int,
    memory: int,
    blocks: list[str] | None = None,
    bridges: list[str] | None = None,
    argv: list[str] | None = None,
) -> bytes:
    return seq(
        _head(typ, compressed, image, fail),
        integer(cpuid),
        integer(memory),
        opt(None if blocks is None else explicit(0, set_of(*(utf8(b) for b in blocks)))),
        opt(None if bridges is None else explicit(1, set_of(*(utf8(b) for b in bridges)))),
        _argv(argv),
    )


def v2_config(
    typ: bytes,
    compressed: bool,
    image: bytes,
    fail: bytes,
    cpuid: int,
    memory: int,
    blocks: list[str] | None = None,
    bridges: list[tuple[str, str | None]] | None = None,
    argv: list[str] | None = None,
) -> bytes:
    """V1 but bridges are a SEQUENCE OF (netif, bridge OPTIONAL), kept in list order."""
    nets = None
    if bridges is not None:
        nets = explicit(1, seq(*(seq(utf8(n), opt_utf8(b)) for n, b in bridges)))
    return seq(
        _head(typ, compressed, image, fail),
        integer(cpuid),
        integer(memory),
        opt(None if blocks is None else explicit(0, set_of(*(utf8(b) for b in blocks)))),
        opt(nets),
        _argv(argv),
    )


Block = tuple[str, str | None, int | None]
Bridge = tuple[str, str | None, bytes | None]


def _devices(blocks: list[Block] | None, bridges: list[Bridge] | None) -> bytes:
    out = b""
    if blocks is not None:
        out += explicit(
            0,
            set_of(*(seq(utf8(n), opt_utf8(d), opt_integer(s)) for n, d, s in blocks)),
        )
    if bridges is not None:
        out += explicit(
            1,
            set_of(
                *(
                    seq(utf8(n), opt_utf8(b), opt(None if m is None else octets(m)))
                    for n, b, m in bridges
                )
            ),
        )
    return out


def v3_config(
    typ: bytes,
    compressed: bool,
    image: bytes,
    fail: bytes,
    cpuid: int,
    memory: int,
    blocks: list[Block] | None = None,
    bridges: list[Bridge] | None = None,
    argv: list[str] | None = None,
) -> bytes:
    return seq(
        _head(typ, compressed, image, fail),
        integer(cpuid),
        integer(memory),
        _devices(blocks, bridges),
        _argv(argv),
    )


def v4_config(
    typ: bytes,
    compressed: bool,
    image: bytes,
    startup: int | None,
    add_name: bool,
    fail: bytes,
    cpuid: int,
    memory: int,
    blocks: list[Block] | None = None,
    bridges: list[Bridge] | None = None,
    argv: list[str] | None = None,
) -> bytes:
    return seq(
        typ + boolean(compressed) + octets(image),
        opt_integer(startup),
        boolean(add_name),
        fail,
        integer(cpuid),
        integer(memory),
        _devices(blocks, bridges),
        _argv(argv),
    )


def config(
    typ: bytes,
    compressed: bool,
    image: bytes,
    startup: int | None,
    add_name: bool,
    fail: bytes,
    cpuids: list[int],
    memory: int,
    blocks: list[Block] | None = None,
    bridges: list[Bridge] | None = None,
    argv: list[str] | None = None,
    cpus: int = 1,
    linux_boot_partition: str | None = None,
) -> bytes:
    """The current ``unikernel_config`` (albatross always writes ``cpus``)."""
    return seq(
        typ + boolean(compressed) + octets(image),
        opt_integer(startup),
        boolean(add_name),
        fail,
        set_of(*(integer(c) for c in cpuids)),
        integer(memory),
        _devices(blocks, bridges),
        _argv(argv),
        explicit(3, integer(cpus)),
        opt(None if linux_boot_partition is None else explicit(4, utf8(linux_boot_partition))),
    )


def policy(
    cpuids: list[int], unikernels: int, memory: int, block: int | None, bridges: list[str]
) -> bytes:
    return seq(
        seq(*(integer(c) for c in cpuids)),
        integer(unikernels),
        integer(memory),
        opt_integer(block),
        strings(bridges),
    )


def trie(*entries: tuple[str, bytes]) -> bytes:
    return seq(*(seq(utf8(name), value) for name, value in entries))


def unikernels_only(layout: int, *entries: tuple[str, bytes]) -> bytes:
    """``[0]``-``[3]``: a trie of unikernels, no policies."""
    return explicit(layout, trie(*entries))


def with_policies(
    layout: int, unikernels: list[tuple[str, bytes]], policies: list[tuple[str, bytes]]
) -> bytes:
    """``[4]``-``[6]``: SEQUENCE { unikernels trie, policies trie }."""
    return explicit(layout, seq(trie(*unikernels), trie(*policies)))


IMAGE = b"\x7fELF fake image"

# One dump per alternative albatross 2.7.2 reads, exercising what tells the layouts apart.
DUMPS: dict[int, bytes] = {
    # [0] V1: sets of plain names (DER order: shorter first), restart codes; "B:a" tests trie
    # order and lower-casing.
    0: unikernels_only(
        0,
        (
            "web",
            v1_config(
                SOLO5, False, IMAGE, restart(7, 0), 1, 64, ["b", "a0disk"], ["service"], ["-l"]
            ),
        ),
        ("B:a", v1_config(BHYVE, True, b"", QUIT, 0, 32)),
    ),
    # [1] V0: a name without ":", a path with upper case, each image kind, list order kept.
    1: unikernels_only(
        1,
        ("hello", v0_config(0, 16, 2, IMAGE, "storage", ["service", "admin"], ["-l", "*:debug"])),
        ("Alice:Arm", v0_config(3, 32, 1, IMAGE)),
        ("alice:amd", v0_config(1, 8, 0, IMAGE, networks=["service"])),
    ),
    # [2] V2: bridges with and without a bridge name, in the list's (not DER) order.
    2: unikernels_only(
        2,
        (
            ":v2",
            v2_config(
                SOLO5,
                True,
                IMAGE,
                restart(),
                2,
                128,
                ["disk"],
                [("service", "br0"), ("admin", None)],
                [],
            ),
        ),
    ),
    # [3] V3: block devices and bridges with device names, sector size and MAC, in DER order
    # (shorter encoding first, not by name).
    3: unikernels_only(
        3,
        (
            "alice:v3",
            v3_config(
                SOLO5,
                False,
                IMAGE,
                QUIT,
                0,
                32,
                [("a", "disk1", 4096), ("b", None, None)],
                [("eth0", "service", MAC), ("net1", None, None)],
            ),
        ),
    ),
    # [4] V3 configs and policies.
    4: with_policies(
        4,
        [("alice:old", v3_config(SOLO5, True, IMAGE, restart(1), 1, 16, argv=["a b"]))],
        [
            (":", policy([0, 1], 10, 1024, 500, ["br0", "service"])),
            ("alice:", policy([1], 2, 64, None, [])),
        ],
    ),
    # [5] V4 configs (startup, add-name) and policies.
    5: with_policies(
        5,
        [
            (
                "alice:v4",
                v4_config(
                    SOLO5, False, IMAGE, 3, False, QUIT, 1, 16, bridges=[("service", None, MAC)]
                ),
            )
        ],
        [("alice:", policy([1], 2, 64, 10, ["service"]))],
    ),
    # [6] the current layout, as albatross 2.7 writes it.
    6: with_policies(
        6,
        [
            (
                "alice:now",
                config(
                    BHYVE,
                    False,
                    b"",
                    None,
                    True,
                    QUIT,
                    [0, 1],
                    512,
                    blocks=[("0", "zvol0", 512)],
                    cpus=2,
                    linux_boot_partition="/boot",
                ),
            )
        ],
        [(":", policy([0, 1], 10, 1024, None, ["service"]))],
    ),
}
