"""inspect-dump / extract-dump on albatross's state file, in every layout albatross 2.7.2 reads.

The expected texts follow ``client/albatross_client.ml`` (``inspect_dump``:
"parsed %u unikernels:", ``Name.pp``, ``Unikernel.pp_config``, ``Policy.pp``)
on Format's 78-column margin.  The dumps are built from the albatross grammar
in :mod:`tests.wire.statefiles`; the codec itself is tested in tests/wire.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from client.cli import alba
from core.wire import BlockDevice, Name, NetIf, Policy, Restart, UnikernelConfig
from core.wire.state import encode_state
from tests.vectors import CASES
from tests.wire import statefiles as sf

IMAGE = (CASES / "003-create-hello-minimal" / "fake_hello.hvt").read_bytes()
CONFIG = UnikernelConfig(
    image=zlib.compress(IMAGE), memory=16, compressed=True, argv=("--hello=hi", "x"),
    blocks=frozenset({BlockDevice("storage", "disk1", 4096)}),
    bridges=frozenset({NetIf("service0", "service", bytes.fromhex("008041aabbcc"))}),
    fail_behaviour=Restart(frozenset({0, 7})), startup=3,
)  # fmt: skip
POLICY = Policy(2, frozenset({0}), 64, 100, frozenset({"service"}))
CURRENT = encode_state([(Name.parse("alice:hello"), CONFIG)], [(Name.parse("alice:"), POLICY)])

NO_POLICIES = "parsed 0 policies:\n"
PRINTED: dict[int, str] = {
    0: "parsed 2 unikernels:\n"
    "[unikernel: b:a]: typ BHyve compression true image 0 bytes\n"
    "fail behaviour quit startup at not specified add_name true CPUids 0\n"
    "32 MB memory block devices  bridge  #cpus 1 linux_boot not specified\n"
    "[unikernel: :web]: typ solo5 compression false image 15 bytes\n"
    "fail behaviour restart 0, 7 startup at not specified add_name true CPUids 1\n"
    "64 MB memory block devices b -> b, a0disk -> a0disk bridge service -> service\n"
    "#cpus 1 linux_boot not specified\n" + NO_POLICIES,
    1: "parsed 3 unikernels:\n"
    "[unikernel: alice:amd]: typ solo5 compression false image 15 bytes\n"
    "fail behaviour quit startup at not specified add_name true CPUids 1\n"
    "8 MB memory block devices  bridge service -> service #cpus 1\n"
    "linux_boot not specified\n"
    "[unikernel: alice:arm]: typ solo5 compression false image 15 bytes\n"
    "fail behaviour quit startup at not specified add_name true CPUids 3\n"
    "32 MB memory block devices  bridge  #cpus 1 linux_boot not specified\n"
    "[unikernel: :hello]: typ solo5 compression true image 15 bytes\n"
    "fail behaviour quit startup at not specified add_name true CPUids 0\n"
    "16 MB memory block devices storage -> storage\n"
    "bridge service -> service, admin -> admin #cpus 1 linux_boot not specified\n" + NO_POLICIES,
    2: "parsed 1 unikernels:\n"
    "[unikernel: :v2]: typ solo5 compression true image 15 bytes\n"
    "fail behaviour restart all except 1 startup at not specified add_name true\n"
    "CPUids 2 128 MB memory block devices disk -> disk\n"
    "bridge service -> br0, admin -> admin #cpus 1 linux_boot not specified\n" + NO_POLICIES,
    3: "parsed 1 unikernels:\n"
    "[unikernel: alice:v3]: typ solo5 compression false image 15 bytes\n"
    "fail behaviour quit startup at not specified add_name true CPUids 0\n"
    "32 MB memory block devices b -> b, a -> disk1, sector-size: 4096\n"
    "bridge net1 -> net1, eth0 -> service@00:80:41:aa:bb:cc #cpus 1\n"
    "linux_boot not specified\n" + NO_POLICIES,
    4: "parsed 1 unikernels:\n"
    "[unikernel: alice:old]: typ solo5 compression true image 15 bytes\n"
    "fail behaviour restart 1 startup at not specified add_name true CPUids 1\n"
    "16 MB memory block devices  bridge  #cpus 1 linux_boot not specified\n"
    "parsed 2 policies:\n"
    "[unikernel: :]: policy: 10 unikernels 0,1 CPUids 1024 MB memory 500 MB block, "
    "bridges: br0, service\n"
    "[unikernel: alice:]: policy: 2 unikernels 1 CPUids 64 MB memory no block\n",
    5: "parsed 1 unikernels:\n"
    "[unikernel: alice:v4]: typ solo5 compression false image 15 bytes\n"
    "fail behaviour quit startup at 3 add_name false CPUids 1 16 MB memory\n"
    "block devices  bridge service -> service@00:80:41:aa:bb:cc #cpus 1\n"
    "linux_boot not specified\n"
    "parsed 1 policies:\n"
    "[unikernel: alice:]: policy: 2 unikernels 1 CPUids 64 MB memory 10 MB block, "
    "bridges: service\n",
    6: "parsed 1 unikernels:\n"
    "[unikernel: alice:now]: typ BHyve compression false image 0 bytes\n"
    "fail behaviour quit startup at not specified add_name true CPUids 0, 1\n"
    "512 MB memory block devices 0 -> zvol0, sector-size: 512 bridge  #cpus 2\n"
    "linux_boot /boot\n"
    "parsed 1 policies:\n"
    "[unikernel: :]: policy: 10 unikernels 0,1 CPUids 1024 MB memory no block, "
    "bridges: service\n",
}


def _invoke(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(alba, args, prog_name="albatross-client")
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("layout", sorted(sf.DUMPS))
def test_inspect_dump_prints_every_layout_as_albatross(tmp_path: Path, layout: int) -> None:
    (tmp_path / "state").write_bytes(sf.DUMPS[layout])
    assert _invoke(["inspect-dump", "--dbdir", str(tmp_path)])[:2] == (0, PRINTED[layout])


@pytest.mark.parametrize("layout", sorted(sf.DUMPS))
def test_inspect_dump_json_reads_every_layout(tmp_path: Path, layout: int) -> None:
    """--json: one ``state`` record whose names and counts are the text's, in every layout."""
    (tmp_path / "state").write_bytes(sf.DUMPS[layout])
    code, out, _ = _invoke(["inspect-dump", "--dbdir", str(tmp_path), "--json"])
    assert code == 0
    (line,) = out.splitlines()
    state = json.loads(line)
    assert (state["schema"], state["record"]) == (1, "state")
    text = PRINTED[layout]
    unikernels = [u["name"] for u in state["unikernels"]]
    policies = [p["name"] for p in state["policies"]]
    assert f"parsed {len(unikernels)} unikernels:" in text
    assert f"parsed {len(policies)} policies:" in text
    for name in unikernels + policies:
        assert f"[unikernel: {name}]" in text
    for policy in state["policies"]:
        assert f"{policy['memory']} MB memory" in text


def test_inspect_dump_current(tmp_path: Path) -> None:
    (tmp_path / "state").write_bytes(CURRENT)
    code, out, _ = _invoke(["inspect-dump", "--dbdir", str(tmp_path)])
    assert code == 0
    assert out == (
        "parsed 1 unikernels:\n"
        f"[unikernel: alice:hello]: typ solo5 compression true image {len(CONFIG.image)} bytes\n"
        "fail behaviour restart 0, 7 startup at 3 add_name true CPUids 0 16 MB memory\n"
        "block devices storage -> disk1, sector-size: 4096\n"
        "bridge service0 -> service@00:80:41:aa:bb:cc #cpus 1 linux_boot not specified\n"
        "parsed 1 policies:\n"
        "[unikernel: alice:]: policy: 2 unikernels 0 CPUids 64 MB memory 100 MB block, "
        "bridges: service\n"
    )


def test_extract_dump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "saved").write_bytes(CURRENT)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    code, out, _ = _invoke(["extract-dump", "alice:hello", "--file", str(tmp_path / "saved")])
    assert code == 0
    first, *config = out.splitlines()
    written = Path(first.removeprefix("dumped image to "))
    assert written.name.startswith("alice:hello.")
    assert written.read_bytes() == IMAGE
    assert config[-1].endswith("argv --hello=hi x")
    missing = _invoke(["extract-dump", "ghost", "--file", str(tmp_path / "saved")])
    assert missing[:2] == (124, "albatross-client: [ERROR] unikernel not found\n")


@pytest.mark.parametrize("asked", ["hello", ":hello", "HELLO"])
def test_extract_dump_from_the_oldest_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, asked: str
) -> None:
    # A v0 config keeps "compressed" in its image tag [2]; the name was stored without ":".
    v0 = sf.v0_config(0, 16, 2, zlib.compress(IMAGE), networks=["service", "admin"], argv=["-x"])
    (tmp_path / "state").write_bytes(sf.unikernels_only(1, ("hello", v0)))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    code, out, _ = _invoke(["extract-dump", asked, "--dbdir", str(tmp_path)])
    assert code == 0, out
    first, *config = out.splitlines()
    assert Path(first.removeprefix("dumped image to ")).read_bytes() == IMAGE
    assert "\n".join(config) == (
        f"typ solo5 compression true image {len(zlib.compress(IMAGE))} bytes fail behaviour quit\n"
        "startup at not specified add_name true CPUids 0 16 MB memory block devices \n"
        "bridge service -> service, admin -> admin #cpus 1 linux_boot not specified\n"
        "argv -x"
    )


def test_dump_file_errors(tmp_path: Path) -> None:
    assert _invoke(["inspect-dump", "--dbdir", str(tmp_path)])[:2] == (
        124, "albatross-client: [ERROR] dump file not found\n")  # fmt: skip
    (tmp_path / "state").write_bytes(b"\x30\x00")
    code, out, _ = _invoke(["inspect-dump", "--dbdir", str(tmp_path)])
    assert (code, out) == (
        124,
        "albatross-client: [ERROR] couldn't parse dump file: state file: state: "
        "unexpected tag 0x30\n",
    )
    (tmp_path / "state").write_bytes(bytes.fromhex("a7020500"))
    code, out, _ = _invoke(["inspect-dump", "--dbdir", str(tmp_path)])
    assert (code, out) == (
        124,
        "albatross-client: [ERROR] couldn't parse dump file: state file: state: [7] is the "
        "unfinished 'NYI' layout, which albatross 2.7.2 cannot read either\n",
    )


def test_file_is_a_name_in_dbdir_or_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Vmm_unix.restore: a bare name is looked up in the dbdir, a path (with "/") as given.
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "old").write_bytes(sf.DUMPS[3])
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "old").write_bytes(sf.DUMPS[4])
    monkeypatch.chdir(tmp_path)
    db = ["--dbdir", str(tmp_path / "db")]
    assert _invoke(["inspect-dump", "--file", "old", *db])[1] == PRINTED[3]
    assert _invoke(["inspect-dump", "--file", "sub/old", *db])[1] == PRINTED[4]
