"""``alba tree``: the pure builder over synthetic and captured replies, and end to end
through the stand-in (local socket) and our endpoint (remote, as a delegate)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TypeVar

import pytest

from client.expiry import delegation_paths
from client.tree import build_tree, render_text, tree_json
from core.pemfiles import load_certificates
from core.wire import (
    BlockDeviceEntry,
    BlockDeviceList,
    Name,
    NetInfoRecord,
    Policy,
    PolicyList,
    Quit,
    Typ,
    UnikernelInfoList,
    UnikernelInfoRecord,
    decode_message,
)
from tests.client.stack import Stack
from tests.client.test_e2e import TICKER, root_args, run
from tests.vectors import CASES, CERTS, captured_at, case_frames

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
T = TypeVar("T")


def _reply(case: str, kind: type[T]) -> T:
    """The case's last daemon reply, which must be a *kind*."""
    replies = [
        decode_message(f.body).payload
        for f in case_frames(CASES / case)
        if f.direction == "from_daemon" and f.length > 0
    ]
    assert isinstance(replies[-1], kind)
    return replies[-1]


def _uk(
    memory: int, cpus: frozenset[int] = frozenset({0}), bridges: tuple[str, ...] = ()
) -> UnikernelInfoRecord:
    nets = frozenset(NetInfoRecord(b, b, b"\0" * 6) for b in bridges)
    return UnikernelInfoRecord(Typ.SOLO5, Quit(), cpus, memory, b"\0" * 32, bridges=nets)


def _pol(unikernels: int, memory: int, block: int | None) -> Policy:
    return Policy(unikernels, frozenset({0}), memory, block, frozenset({"service"}))


def test_captured_replies_make_the_root_tree() -> None:
    """policy info (051), unikernel info (007), block info (031): the root operator's tree."""
    root = build_tree(
        (),
        _reply("051-policy-root-path-alice", PolicyList).policies,
        _reply("007-info-two-running", UnikernelInfoList).unikernels,
        _reply("031-block-info", BlockDeviceList).devices,
        captured_at("031-block-info"),
    )
    assert render_text(root) == (
        ":  policy: 4611686018427387903 unikernels 0,1 CPUids 24105 MB memory 258019 MB block\n"
        "  used 2/unlimited unikernels, 36/24105 MB memory, 2/258019 MB block; "
        "free unlimited unikernels, 24069 MB memory, 258017 MB block\n"
        "  unikernel :tick1  16 MB memory, CPUids 0\n"
        "  unikernel :tick2  20 MB memory, CPUids 1\n"
        "  block :disk1  1 MB, unused\n"
        "  block :disk2  1 MB, unused\n"
    )
    data = tree_json(root)
    assert data["usage"] == {"unikernels": 2, "memory": 36, "block": 2}
    assert data["headroom"] == {"unikernels": 4611686018427387901, "memory": 24069, "block": 258017}
    assert [u["name"] for u in data["unikernels"]] == [":tick1", ":tick2"]  # type: ignore[attr-defined]
    assert data["children"] == [] and data["full"] == [] and data["overcommitted"] == []


@pytest.mark.parametrize(
    ("before_end", "marked"),
    [
        (dt.timedelta(days=400), False),
        (dt.timedelta(days=15), False),
        (dt.timedelta(days=14), False),  # exactly 14 days left: not yet
        (dt.timedelta(days=14, seconds=-1), True),
        (dt.timedelta(days=1), True),
        (dt.timedelta(days=-1), True),  # expired
    ],
)
def test_captured_delegation_expiry_per_node(before_end: dt.timedelta, marked: bool) -> None:
    """Dave's captured delegation (valid a year from capture) and his info reply (091)."""
    expiries = delegation_paths(load_certificates(CERTS / "ca" / "Dave.pem", "Dave"))
    end = expiries[("dave",)].not_after
    assert captured_at("091-upper-info") < end - dt.timedelta(days=300)  # judged at capture
    now = end - before_end
    uks = _reply("091-upper-info", UnikernelInfoList).unikernels
    root = build_tree(("dave",), [], uks, [], now, expiries)
    head = render_text(root).splitlines()[0]
    assert head == "dave:  no policy  expires 2027-11-27 18:09 UTC" + (
        "  !EXPIRES" if marked else ""
    )
    assert tree_json(root)["expires_soon"] is marked
    assert [u.name for u in root.unikernels] == [Name(("dave",), "u1")]


def test_overcommitted_children_full_and_over_nodes() -> None:
    policies = [
        (Name(), _pol(2, 64, 100)),  # alice, relative to base
        (Name(("bob",)), _pol(1, 32, 10)),
        (Name(("carol",)), _pol(2, 48, 100)),
    ]
    unikernels = [
        (Name((), "a1"), _uk(32, bridges=("service",))),
        (Name(("bob",), "b1"), _uk(32)),
        (Name(("carol", "deep"), "c1"), _uk(16, frozenset({0, 1}))),
    ]
    blocks = [BlockDeviceEntry(Name(("bob",), "disk"), 12, True)]
    root = build_tree(("alice",), policies, unikernels, blocks, NOW)
    assert render_text(root) == (
        "alice:  policy: 2 unikernels 0 CPUids 64 MB memory 100 MB block, bridges: service"
        "  !OVER(unikernels,memory)"
        "  !OVERCOMMITTED(unikernels 3>2,memory 80>64,block 110>100)\n"
        "  used 3/2 unikernels, 80/64 MB memory, 12/100 MB block; "
        "free -1 unikernels, -16 MB memory, 88 MB block\n"
        "  unikernel alice:a1  32 MB memory, CPUids 0, bridges service\n"
        "  alice:bob:  policy: 1 unikernels 0 CPUids 32 MB memory 10 MB block, bridges: service"
        "  !OVER(block)  !FULL(unikernels,memory)\n"
        "    used 1/1 unikernels, 32/32 MB memory, 12/10 MB block; "
        "free 0 unikernels, 0 MB memory, -2 MB block\n"
        "    unikernel alice:bob:b1  32 MB memory, CPUids 0\n"
        "    block alice:bob:disk  12 MB, in use\n"
        "  alice:carol:  policy: 2 unikernels 0 CPUids 48 MB memory 100 MB block, "
        "bridges: service\n"
        "    used 1/2 unikernels, 16/48 MB memory, 0/100 MB block; "
        "free 1 unikernels, 32 MB memory, 100 MB block\n"
        "    alice:carol:deep:  no policy\n"
        "      used 1 unikernels, 16 MB memory, 0 MB block (no policy here)\n"
        "      unikernel alice:carol:deep:c1  16 MB memory, CPUids 0,1\n"
    )
    data = tree_json(root)
    assert data["overcommitted"] == [
        {"dimension": "unikernels", "children": 3, "policy": 2},
        {"dimension": "memory", "children": 80, "policy": 64},
        {"dimension": "block", "children": 110, "policy": 100},
    ]
    bob = data["children"][0]  # type: ignore[index]
    assert (bob["full"], bob["over"]) == (["unikernels", "memory"], ["block"])


def test_no_block_policy_and_empty_tree() -> None:
    empty = build_tree((), [], [], [], NOW)
    assert (
        render_text(empty)
        == ":  no policy\n  used 0 unikernels, 0 MB memory, 0 MB block (no policy here)\n"
    )
    none = build_tree(
        ("x",), [(Name(), _pol(1, 32, None))], [], [BlockDeviceEntry(Name((), "d"), 1, False)], NOW
    )
    assert none.over == ("block",) and none.headroom is not None and none.headroom.block is None
    assert "0/none MB block" not in render_text(none) and "1/none MB block" in render_text(none)


def test_tree_local_socket_and_remote_delegate(stack: Stack, tmp_path: Path) -> None:
    """The operator on the local socket, then alice through our endpoint (her chain)."""
    endpoint = f"127.0.0.1:{stack.port}"
    made = run(["ca", "delegate", "alice", "2", "--mem", "64", "--size", "100",
                "--bridge", "service", "--ca", "cacert.pem", "--ca-key", "ca.key",
                "--server-ca", "cacert.pem", "--endpoint", endpoint,
                "--server-name", "127.0.0.1"])  # fmt: skip
    assert made.exit_code == 0, made.output
    assert run(["remote", "import", str(tmp_path / "op" / "alice.bundle")]).exit_code == 0
    assert run(["create", "a1", str(TICKER), "--mem", "32", "--remote", "alice"]).exit_code == 0
    assert run(["create-block", "ad", "10", "--remote", "alice"]).exit_code == 0
    assert run(["create", "top", str(TICKER), "--mem", "16", *root_args(stack)]).exit_code == 0

    local = run(["tree", "--tmpdir", str(stack.tmpdir), "--json"])
    assert local.exit_code == 0, local.output
    data = json.loads(local.stdout)
    assert data["path"] == ":" and data["usage"] == {"unikernels": 2, "memory": 48, "block": 10}
    assert [u["name"] for u in data["unikernels"]] == [":top"]
    (alice,) = data["children"]
    assert alice["path"] == "alice:"
    assert alice["policy"]["memory"] == 64 and alice["usage"]["memory"] == 32
    assert alice["headroom"] == {"unikernels": 1, "memory": 32, "block": 90}
    assert alice["blocks"] == [{"name": "alice:ad", "size": 10, "active": False}]
    assert alice["expires"] is None  # the operator has no chain of alice's at hand
    assert (data["schema"], data["record"]) == (1, "tree")  # the output model's record
    as_format = run(["tree", "--tmpdir", str(stack.tmpdir), "--format", "json"])
    assert as_format.stdout == local.stdout
    quiet = run(["tree", "--tmpdir", str(stack.tmpdir), "-q"])
    assert (quiet.exit_code, quiet.stdout) == (0, "")

    sub = run(["tree", "--tmpdir", str(stack.tmpdir), "--path", "alice"])
    assert sub.exit_code == 0, sub.output
    assert sub.stdout.splitlines()[1] == (
        "  used 1/2 unikernels, 32/64 MB memory, 10/100 MB block; "
        "free 1 unikernels, 32 MB memory, 90 MB block"
    )

    # alice delegates to bob; bob's policy reaches the daemon with his first command
    made_bob = run(["ca", "delegate", "bob", "1", "--mem", "32", "--size", "10", "--bridge",
                    "service", "--bundle", str(tmp_path / "op" / "alice.bundle")])  # fmt: skip
    assert made_bob.exit_code == 0, made_bob.output
    assert run(["remote", "import", "bob.bundle"]).exit_code == 0
    assert run(["info", "--remote", "bob"]).exit_code == 0

    remote = run(["tree", "--remote", "alice"])
    assert remote.exit_code == 0, remote.output
    lines = remote.stdout.splitlines()
    # bob's node, and its expiry from the remote "bob" of the same host
    bob_head, bob_expires = lines[4].split("  expires ")
    assert bob_head == (
        "  alice:bob:  policy: 1 unikernels 0 CPUids 32 MB memory 10 MB block, bridges: service"
    )
    assert "!" not in bob_expires
    assert lines[5:] == [
        "    used 0/1 unikernels, 0/32 MB memory, 0/10 MB block; "
        "free 1 unikernels, 32 MB memory, 10 MB block"
    ]
    lines = lines[:4]
    head, expires = lines[0].split("  expires ")
    assert head == (
        "alice:  policy: 2 unikernels 0 CPUids 64 MB memory 100 MB block, bridges: service"
    )
    assert "!" not in expires  # a fresh delegation: a year left
    assert lines[1:] == [
        "  used 1/2 unikernels, 32/64 MB memory, 10/100 MB block; "
        "free 1 unikernels, 32 MB memory, 90 MB block",
        "  unikernel alice:a1  32 MB memory, CPUids 0",
        "  block alice:ad  10 MB, unused",
    ]
    operator = run(["tree", *root_args(stack)])  # the root CA over the network: everything
    assert operator.exit_code == 0, operator.output
    assert [line for line in operator.stdout.splitlines() if not line.startswith("    ")] == [
        ":  policy: 4611686018427387903 unikernels 0,1 CPUids 4096 MB memory 10000 MB block, "
        "bridges: service",
        "  used 2/unlimited unikernels, 48/4096 MB memory, 10/10000 MB block; "
        "free unlimited unikernels, 4048 MB memory, 9990 MB block",
        "  unikernel :top  16 MB memory, CPUids 0",
        f"  {head}  expires {expires}",  # alice's chain: a named remote of this host
    ]
    refused = run(["tree", "--remote", "alice", "--path", "alice"])
    assert refused.exit_code == 124
    assert "--path works with a local socket" in refused.stderr
    csr = run(["tree", "--csr"])
    assert (csr.exit_code, csr.stderr) == (
        124,
        "albatross-client: tree asks the host three questions: use a socket or a\n"
        "                  remote\n",
    )


def test_delegation_paths_of_captured_chains() -> None:
    """bob.pem holds bob then alice (signing CA first): paths come out top-down."""
    bob = delegation_paths(load_certificates(CERTS / "ca" / "bob.pem", "bob"))
    assert {path: e.cn for path, e in bob.items()} == {("alice",): "alice", ("alice", "bob"): "bob"}
    root = load_certificates(CERTS / "ca" / "root-cacert.pem", "root")
    assert delegation_paths(root) == {}  # a root carries no policy: no path of its own


def test_a_unikernel_named_like_a_delegation_counts_against_it() -> None:
    """``:alice`` has albatross's trie key ``alice``: vmmd and the endpoint's quota rule count
    it against the policy at ``alice:``, so the tree does too (it is listed at the root)."""
    from tlsendpoint.security.rules.quota import usage_from_replies

    policies = [(Name((), None), _pol(10, 1024, 100)), (Name(("alice",), None), _pol(2, 64, 10))]
    unikernels = [(Name((), "alice"), _uk(32)), (Name(("alice",), "web"), _uk(16))]
    blocks = [BlockDeviceEntry(Name((), "alice"), 5, False)]
    root = build_tree((), policies, unikernels, blocks, NOW)
    (alice,) = root.children
    assert [str(u.name) for u in root.unikernels] == [":alice"]
    assert (alice.usage.unikernels, alice.usage.memory, alice.usage.block) == (2, 48, 5)
    # the same numbers as the endpoint's quota rule
    usage = usage_from_replies(
        Name((), None), UnikernelInfoList(tuple(unikernels)), BlockDeviceList(tuple(blocks))
    )
    totals = usage.totals(Name(("alice",), None))
    assert (totals.unikernels, totals.memory, totals.block) == (2, 48, 5)
