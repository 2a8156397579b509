"""albatross's state file: every layout 2.7.2 reads, the one it writes, and bad files.

The dumps are built by hand from the albatross grammar (:mod:`tests.wire.statefiles`).
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import ParseError
from core.wire import (
    BlockDevice,
    Name,
    NetIf,
    Policy,
    Restart,
    Typ,
    UnikernelConfig,
)
from core.wire.der import tlv
from core.wire.state import State, StoredUnikernel, decode_state, encode_state
from tests.wire import statefiles as sf
from tests.wire import strategies as gen

QUICK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
IMAGE = sf.IMAGE


def n(text: str) -> Name:
    return Name.parse(text)


def stored(
    name: str,
    config: UnikernelConfig,
    blocks: tuple[BlockDevice, ...] = (),
    bridges: tuple[NetIf, ...] = (),
) -> StoredUnikernel:
    return StoredUnikernel(n(name), config, blocks, bridges)


SERVICE_MAC = NetIf("service", None, sf.MAC)
EXPECTED: dict[int, State] = {
    0: State(
        (
            stored(
                "b:a",
                UnikernelConfig(
                    image=b"", memory=32, cpuids=frozenset({0}), compressed=True, typ=Typ.BHYVE
                ),
            ),
            stored(
                ":web",
                UnikernelConfig(
                    image=IMAGE,
                    memory=64,
                    cpuids=frozenset({1}),
                    fail_behaviour=Restart(frozenset({0, 7})),
                    blocks=frozenset({BlockDevice("a0disk"), BlockDevice("b")}),
                    bridges=frozenset({NetIf("service")}),
                    argv=("-l",),
                ),
                (BlockDevice("b"), BlockDevice("a0disk")),
                (NetIf("service"),),
            ),
        ),
        (),
        0,
    ),
    1: State(
        (
            stored(
                "alice:amd",
                UnikernelConfig(
                    image=IMAGE,
                    memory=8,
                    cpuids=frozenset({1}),
                    bridges=frozenset({NetIf("service")}),
                ),
                (),
                (NetIf("service"),),
            ),
            stored("alice:arm", UnikernelConfig(image=IMAGE, memory=32, cpuids=frozenset({3}))),
            stored(
                ":hello",
                UnikernelConfig(
                    image=IMAGE,
                    memory=16,
                    compressed=True,
                    blocks=frozenset({BlockDevice("storage")}),
                    bridges=frozenset({NetIf("service"), NetIf("admin")}),
                    argv=("-l", "*:debug"),
                ),
                (BlockDevice("storage"),),
                (NetIf("service"), NetIf("admin")),  # the list's order, not DER's
            ),
        ),
        (),
        1,
    ),
    2: State(
        (
            stored(
                ":v2",
                UnikernelConfig(
                    image=IMAGE,
                    memory=128,
                    cpuids=frozenset({2}),
                    compressed=True,
                    fail_behaviour=Restart(frozenset()),
                    blocks=frozenset({BlockDevice("disk")}),
                    bridges=frozenset({NetIf("service", "br0"), NetIf("admin")}),
                    argv=(),
                ),
                (BlockDevice("disk"),),
                (NetIf("service", "br0"), NetIf("admin")),
            ),
        ),
        (),
        2,
    ),
    3: State(
        (
            stored(
                "alice:v3",
                UnikernelConfig(
                    image=IMAGE,
                    memory=32,
                    blocks=frozenset({BlockDevice("a", "disk1", 4096), BlockDevice("b")}),
                    bridges=frozenset({NetIf("eth0", "service", sf.MAC), NetIf("net1")}),
                ),
                (BlockDevice("b"), BlockDevice("a", "disk1", 4096)),
                (NetIf("net1"), NetIf("eth0", "service", sf.MAC)),
            ),
        ),
        (),
        3,
    ),
    4: State(
        (
            stored(
                "alice:old",
                UnikernelConfig(
                    image=IMAGE,
                    memory=16,
                    cpuids=frozenset({1}),
                    compressed=True,
                    fail_behaviour=Restart(frozenset({1})),
                    argv=("a b",),
                ),
            ),
        ),
        (
            (n(":"), Policy(10, frozenset({0, 1}), 1024, 500, frozenset({"br0", "service"}))),
            (n("alice:"), Policy(2, frozenset({1}), 64, None, frozenset())),
        ),
        4,
    ),
    5: State(
        (
            stored(
                "alice:v4",
                UnikernelConfig(
                    image=IMAGE,
                    memory=16,
                    cpuids=frozenset({1}),
                    startup=3,
                    add_name=False,
                    bridges=frozenset({SERVICE_MAC}),
                ),
                (),
                (SERVICE_MAC,),
            ),
        ),
        ((n("alice:"), Policy(2, frozenset({1}), 64, 10, frozenset({"service"}))),),
        5,
    ),
    6: State(
        (
            stored(
                "alice:now",
                UnikernelConfig(
                    image=b"",
                    memory=512,
                    cpuids=frozenset({0, 1}),
                    typ=Typ.BHYVE,
                    blocks=frozenset({BlockDevice("0", "zvol0", 512)}),
                    numcpus=2,
                    linux_boot_partition="/boot",
                ),
                (BlockDevice("0", "zvol0", 512),),
            ),
        ),
        ((n(":"), Policy(10, frozenset({0, 1}), 1024, None, frozenset({"service"}))),),
        6,
    ),
}


@pytest.mark.parametrize("layout", sorted(sf.DUMPS))
def test_every_layout_albatross_reads(layout: int) -> None:
    assert decode_state(sf.DUMPS[layout]) == EXPECTED[layout]


@pytest.mark.parametrize("layout", sorted(sf.DUMPS))
def test_every_layout_is_written_back_as_the_current_one(layout: int) -> None:
    state = decode_state(sf.DUMPS[layout])
    data = encode_state([(u.name, u.config) for u in state.unikernels], state.policies)
    assert data[0] == 0xA6
    again = decode_state(data)
    assert again.layout == 6
    assert [(u.name, u.config) for u in again.unikernels] == [
        (u.name, u.config) for u in state.unikernels
    ]
    assert again.policies == state.policies


def test_the_current_layout_is_byte_identical_to_albatrosss() -> None:
    state = decode_state(sf.DUMPS[6])
    written = encode_state([(u.name, u.config) for u in state.unikernels], state.policies)
    assert written == sf.DUMPS[6]
    # [6] { SEQUENCE { unikernels SEQUENCE OF {}, policies SEQUENCE OF {} } }
    assert encode_state([], []) == bytes.fromhex("a606300430003000")


def test_entries_are_written_in_trie_order() -> None:
    config = UnikernelConfig(b"img", memory=20)
    policies = [(n("b:"), Policy(1, frozenset(), 1)), (n(":"), Policy(9, frozenset({0}), 100))]
    data = encode_state([(n(":z"), config), (n("a:u"), config)], policies)
    assert data == sf.with_policies(
        6,
        [("a:u", sf.config(sf.SOLO5, False, b"img", None, True, sf.QUIT, [0], 20)),
         (":z", sf.config(sf.SOLO5, False, b"img", None, True, sf.QUIT, [0], 20))],
        [(":", sf.policy([0], 9, 100, None, [])), ("b:", sf.policy([], 1, 1, None, []))],
    )  # fmt: skip


def test_names_with_and_without_a_path_are_albatrosss_names() -> None:
    value = sf.v3_config(sf.SOLO5, False, b"", sf.QUIT, 0, 1)
    data = sf.unikernels_only(3, ("a:B:C", value), ("solo", value), (":Root", value), ("p:", value))
    assert [str(u.name) for u in decode_state(data).unikernels] == [
        "a:b:c",
        "p:",
        ":root",
        ":solo",
    ]


def test_v0_image_kinds() -> None:
    kinds = [sf.v0_config(0, 1, tag, b"i") for tag in (0, 1, 2)]
    data = sf.unikernels_only(1, *((f"k{i}", v) for i, v in enumerate(kinds)))
    assert [u.config.compressed for u in decode_state(data).unikernels] == [False, False, True]


def _v3(bridges: list[sf.Bridge]) -> bytes:
    return sf.v3_config(sf.SOLO5, False, b"", sf.QUIT, 0, 1, bridges=bridges)


VALUE = sf.v3_config(sf.SOLO5, False, b"", sf.QUIT, 0, 1)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "state file: empty"),
        (bytes.fromhex("a7020500"), r"\[7\] is the unfinished 'NYI' layout"),
        (bytes.fromhex("a8020500"), r"unknown alternative \[8\]"),
        (b"\x30\x00", "state: unexpected tag 0x30"),
        (bytes.fromhex("a606300430003000") + b"\x00", "1 trailing octets"),
        (bytes.fromhex("a6063004300030"), "exceeds the 5 octets available"),
        (sf.unikernels_only(3, (":a", VALUE), (":a", VALUE)), "unikernel name :a appears twice"),
        (sf.unikernels_only(3, ("A", VALUE), (":a", VALUE)), "unikernel name :a appears twice"),
        (
            sf.unikernels_only(3, ("alice:", VALUE), (":alice", VALUE)),
            "unikernel names alice: and :alice are one trie node",
        ),
        (
            sf.with_policies(4, [], [("a:", sf.policy([], 1, 1, None, []))] * 2),
            "policy name a: appears twice",
        ),
        (sf.unikernels_only(3, ("bad_name", VALUE)), "invalid label 'bad_name'"),
        (sf.unikernels_only(3, ("", VALUE)), "name: empty string"),
        (sf.unikernels_only(1, (":a", sf.v0_config(0, 1, 3, b""))), r"unknown alternative \[3\]"),
        (
            sf.unikernels_only(1, (":a", sf.v0_config(0, 1, 0, b"", networks=[]))),
            "network interfaces: present but empty",
        ),
        (
            sf.unikernels_only(
                2, (":a", sf.v2_config(sf.SOLO5, False, b"", sf.QUIT, 0, 1, bridges=[]))
            ),
            "bridges: present but empty",
        ),
        (
            sf.unikernels_only(
                0,
                (
                    ":a",
                    sf.seq(
                        sf.SOLO5,
                        sf.boolean(False),
                        sf.octets(b""),
                        sf.QUIT,
                        sf.integer(0),
                        sf.integer(1),
                        sf.explicit(0, sf.seq(sf.utf8("b"), sf.utf8("a"))),
                    ),
                ),
            ),
            "blocks: unexpected tag 0x30",
        ),
        (
            sf.unikernels_only(
                0,
                (
                    ":a",
                    sf.seq(
                        sf.SOLO5,
                        sf.boolean(False),
                        sf.octets(b""),
                        sf.QUIT,
                        sf.integer(0),
                        sf.integer(1),
                        sf.explicit(0, tlv(0x31, sf.utf8("b") + sf.utf8("a"))),
                    ),
                ),
            ),
            "not in DER order",
        ),
        (sf.unikernels_only(3, (":a", _v3([("n", None, b"\x00" * 5)]))), "bad mac address"),
        (
            sf.unikernels_only(2, (":a", sf.v1_config(sf.SOLO5, False, b"", sf.QUIT, 0, 1)[:-1])),
            "exceeds",
        ),
    ],
)
def test_refusals(data: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        decode_state(data)


# -- properties ------------------------------------------------------------------------


@QUICK
@given(
    st.dictionaries(gen.names, gen.configs, max_size=3),
    st.dictionaries(gen.names, gen.policies, max_size=3),
)
def test_current_layout_round_trips(
    unikernels: dict[Name, UnikernelConfig], policies: dict[Name, Policy]
) -> None:
    one_per_node = {name.key: (name, c) for name, c in unikernels.items()}
    policy_nodes = {name.key: (name, p) for name, p in policies.items()}
    data = encode_state(one_per_node.values(), policy_nodes.values())
    state = decode_state(data)
    assert {u.name.key: (u.name, u.config) for u in state.unikernels} == one_per_node
    assert dict(state.policies) == dict(policy_nodes.values())
    assert encode_state([(u.name, u.config) for u in state.unikernels], state.policies) == data


@QUICK
@given(st.sampled_from(range(9)), st.binary(max_size=300))
def test_garbage_under_any_layout_tag_gives_only_parse_errors(tag: int, body: bytes) -> None:
    with contextlib.suppress(ParseError):
        decode_state(sf.explicit(tag, body))


@st.composite
def _mutated_dumps(draw: st.DrawFn) -> bytes:
    raw = bytearray(sf.DUMPS[draw(st.sampled_from(sorted(sf.DUMPS)))])
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(raw) - 1))
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        if op == "flip":
            raw[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del raw[pos:]
        elif op == "insert":
            raw[pos:pos] = draw(st.binary(min_size=1, max_size=3))
        elif raw:
            del raw[pos]
        if not raw:
            break
    return bytes(raw)


@QUICK
@given(_mutated_dumps())
def test_mutated_dumps_give_only_parse_errors(data: bytes) -> None:
    try:
        state = decode_state(data)
    except ParseError:
        return
    # Whatever decodes can be written back in the current layout and read again.
    written = encode_state([(u.name, u.config) for u in state.unikernels], state.policies)
    assert [u.config for u in decode_state(written).unikernels] == [
        u.config for u in state.unikernels
    ]
