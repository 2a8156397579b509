"""The click commands, run like albatross-client in the captured cases (CliRunner)."""

from __future__ import annotations

import datetime as dt
import json
import shlex
import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

import ca.cli
from ca.cli import ca_group, generate_command, register, sign_command
from ca.profiles import generate_key, leaf
from ca.store import load_bundle
from core.authorize import authorize
from core.certs import albatross_command
from core.wire import Policy, UnikernelInfo
from tests.ca.helpers import CASES, CERTS, NOW, ext_layout, load_certs, verify


@pytest.fixture(autouse=True)
def _fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ca.cli, "now", lambda: NOW)


def run(command: object, args: list[str]) -> Result:
    import click

    assert isinstance(command, click.Command)
    # the program name albatross-client prints in its log lines (Logs_fmt's prefix)
    return CliRunner().invoke(command, args, prog_name="albatross-client")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def same_certificate_shape(mine: x509.Certificate, captured: x509.Certificate) -> None:
    assert mine.subject.public_bytes() == captured.subject.public_bytes()
    assert mine.issuer.public_bytes() == captured.issuer.public_bytes()
    assert ext_layout(mine) == ext_layout(captured)
    for ours, theirs in zip(mine.extensions, captured.extensions, strict=True):
        assert ours.value == theirs.value, ours.oid
    assert (mine.not_valid_after_utc - mine.not_valid_before_utc) == (
        captured.not_valid_after_utc - captured.not_valid_before_utc
    )
    assert mine.public_key() == captured.public_key()


# -- sign: the captured cases -------------------------------------------------

SIGN_CASES = {
    "050-alice-sign": "alice.pem",
    "066-bob-sign": "bob.pem",
    "072-carol-larger-sign": None,
    "074-dave-upper-sign": "dave.pem",
    "079-csr-leaf-sign": "csrtick.pem",
    "083-csr-alice-sign": "a2.pem",
    "089-upper-sign": "Dave.pem",
}


@pytest.mark.parametrize(("case", "output"), SIGN_CASES.items())
def test_sign_case(
    case: str, output: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = CASES / case
    words = shlex.split(source.joinpath("cmd.txt").read_text())
    assert words[:2] == ["albatross-client", "sign"]
    for name in words[2:]:
        shutil.copy(source / name, tmp_path / name)
        (tmp_path / name).chmod(0o600)
    db_before = (tmp_path / "db").read_text()
    monkeypatch.chdir(tmp_path)
    result = run(sign_command, words[2:])
    assert result.exit_code == int(source.joinpath("rc.txt").read_text())
    assert result.stdout == source.joinpath("stdout.txt").read_text()
    assert result.stderr == source.joinpath("stderr.txt").read_text()
    if output is None:
        assert (tmp_path / "db").read_text() == db_before
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(set(words[2:]))
        return
    mine, captured = load_certs(tmp_path / output), load_certs(source / output)
    assert len(mine) == len(captured)
    same_certificate_shape(mine[0], captured[0])
    assert [c.public_bytes(Encoding.DER) for c in mine[1:]] == [
        c.public_bytes(Encoding.DER) for c in captured[1:]
    ]
    serial = mine[0].serial_number
    hex_serial = serial.to_bytes(serial.bit_length() // 8 + 1, "big").hex()
    cn = output.removesuffix(".pem")
    assert (tmp_path / "db").read_text() == db_before + f"{hex_serial} {cn}\n"


def test_sign_refuses_a_wrong_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = [str(CERTS / "ca/alice.pem"), "db", str(CERTS / "ca/bob.key"), str(CERTS / "ca/bob.req")]
    result = run(sign_command, args)
    assert result.exit_code == 124
    assert result.stdout == (
        "albatross-client: [ERROR] error while signing: "
        "Public key of certificate doesn't match private key\n"
    )
    assert not (tmp_path / "db").exists()


def test_sign_reports_a_missing_csr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = [str(CERTS / "ca/alice.pem"), "db", str(CERTS / "ca/alice.key"), "nope.req"]
    result = run(sign_command, args)
    assert (result.exit_code, result.stdout) == (
        124,
        "albatross-client: [ERROR] error while signing: CSR file nope.req does not exist\n",
    )


def test_sign_host_csr_warns_and_uses_server_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    key = generate_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "web")]))
        .sign(key, None)
    )
    (tmp_path / "web.req").write_bytes(csr.public_bytes(Encoding.PEM))
    args = [
        str(CERTS / "ca/root-cacert.pem"),
        "db",
        str(CERTS / "ca/root-ca.key"),
        "web.req",
        "--days",
        "30",
    ]
    result = run(sign_command, args)
    assert result.exit_code == 0
    assert result.stdout == (
        "signing certificate with subject /CN=web\n"
        "albatross-client: [WARNING] signing certificate without albatross extension "
        "(e.g. host certificate)\n"
    )
    cert = load_certs(tmp_path / "web.pem")[0]
    assert albatross_command(cert) is None
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 30


# -- generate -------------------------------------------------------------------


def test_generate_like_case_085(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run(generate_command, ["myca", "mydb", "--server=srv1"])
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")
    captured = CASES / "085-generate"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cacert.pem",
        "myca.key",
        "mydb",
        "srv1.key",
        "srv1.pem",
    ]
    assert mode(tmp_path / "myca.key") == mode(tmp_path / "srv1.key") == 0o400
    root = load_certs(tmp_path / "cacert.pem")[0]
    server = load_certs(tmp_path / "srv1.pem")[0]
    cap_root = load_certs(captured / "cacert.pem")[0]
    cap_server = load_certs(captured / "srv1.pem")[0]
    assert ext_layout(root) == ext_layout(cap_root)
    assert root.subject.public_bytes() == cap_root.subject.public_bytes()
    assert ext_layout(server) == ext_layout(cap_server)
    assert server.subject.public_bytes() == cap_server.subject.public_bytes()
    line = (tmp_path / "mydb").read_text()
    assert line.endswith(" srv1\n") and len(line.split()[0]) in (20, 22)
    assert int(line.split()[0], 16) == server.serial_number
    verify([server], [root], NOW)
    key_text = (tmp_path / "myca.key").read_text()
    assert key_text.startswith("-----BEGIN PRIVATE KEY-----\n")


def test_generate_reuses_existing_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(generate_command, ["ca", "db"]).exit_code == 0
    first = load_certs(tmp_path / "cacert.pem")[0]
    key_before = (tmp_path / "ca.key").read_bytes()
    assert run(generate_command, ["ca", "db", "--key-type", "p384"]).exit_code == 0
    assert (tmp_path / "ca.key").read_bytes() == key_before
    assert load_certs(tmp_path / "cacert.pem")[0].public_key() == first.public_key()
    assert len((tmp_path / "db").read_text().splitlines()) == 2


def test_generate_server_alt_names_and_key_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = [
        "ca",
        "db",
        "--key-type",
        "p256",
        "--server-name",
        "albatross.example",
        "--server-ip",
        "192.0.2.7",
        "--days",
        "10",
        "--server-days",
        "5",
    ]
    assert run(generate_command, args).exit_code == 0
    server = load_certs(tmp_path / "server.pem")[0]
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["albatross.example"]
    assert server.not_valid_after_utc == NOW + dt.timedelta(days=5)
    root = load_certs(tmp_path / "cacert.pem")[0]
    assert root.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]


def test_generate_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run(generate_command, ["ca", "db", "--server-ip", "nope"])
    assert (result.exit_code, result.stdout) == (
        124,
        "albatross-client: [ERROR] error while generating: bad server IP address 'nope': "
        "give an IPv4 or IPv6 address\n",
    )
    result = run(generate_command, ["ca", "db", "--key-type", "dsa"])
    assert result.exit_code == 2 and "Invalid value for '--key-type'" in result.stderr
    (tmp_path / "ca.key").write_text("not a key")
    result = run(generate_command, ["ca", "db"])
    assert result.exit_code == 124
    assert "error while generating: key file ca.key: not a valid private key" in result.stdout


# -- delegate: operator -> alice -> bob ----------------------------------------


def _operator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(generate_command, ["ca", "db", "--server-name", "albatross.example"]).exit_code == 0


ALICE_ARGS = [
    "alice",
    "2",
    "--mem",
    "64",
    "--cpu",
    "0",
    "--size",
    "100",
    "--bridge",
    "service",
    "--ca",
    "cacert.pem",
    "--endpoint",
    "127.0.0.1:1025",
    "--server-name",
    "albatross.example",
    "--db",
    "db",
]


def test_two_level_delegation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _operator(tmp_path, monkeypatch)
    result = run(ca_group, ["delegate", *ALICE_ARGS])
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        "wrote alice.bundle: delegated CA alice with policy: 2 unikernels 0 CPUids "
        "64 MB memory 100 MB block, bridges: service\n"
    )
    assert mode(tmp_path / "alice.bundle") == 0o600
    assert (tmp_path / "db").read_text().splitlines()[1].endswith(" alice")
    # alice uses her bundle as CA certificate and key to delegate to bob
    bob_args = [
        "bob",
        "1",
        "--mem",
        "32",
        "--size",
        "10",
        "--bridge",
        "service",
        "--ca",
        "alice.bundle",
        "--ca-key",
        "alice.bundle",
        "--endpoint",
        "h:1025",
    ]
    result = run(ca_group, ["delegate", *bob_args])
    assert result.exit_code == 0, result.output
    bob = load_bundle(tmp_path / "bob.bundle")
    alice = load_bundle(tmp_path / "alice.bundle")
    assert bob.chain[1] == alice.chain[0] and len(bob.chain) == 2
    root = load_certs(tmp_path / "cacert.pem")[0]
    assert bob.server_ca == (root,)
    request_leaf = leaf(
        bob.chain[0], bob.key, generate_key().public_key(), "b1", UnikernelInfo(), NOW
    )
    verify([request_leaf, *bob.chain], [root], NOW)
    request = authorize([request_leaf, *bob.chain])
    assert str(request.name) == "alice:bob:b1"
    assert [str(name) for name, _ in request.policies] == ["alice:bob:", "alice:"]
    assert request.policies[0][1] == Policy(1, frozenset({0}), 32, 10, frozenset({"service"}))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["carol", "5"], "error: policy above allows 2 unikernels, which is fewer than 5\n"),
        (
            ["carol", "1", "--mem", "128"],
            "error: policy above allows 64 MB memory, which is fewer than 128 MB\n",
        ),
        (
            ["carol", "1", "--mem", "32", "--bridge", "other"],
            "error: policy above allows bridge(s) service, which is not a superset of other\n",
        ),
        (["carol", "0"], "error: Unusable policy with no unikernels\n"),
        (
            ["Carol", "1", "--mem", "32", "--bridge", "service"],
            "error: delegate name 'Carol' must be lower case: use 'carol'\n",
        ),
        (["a:b", "1", "--mem", "32", "--bridge", "service"], None),
    ],
)
def test_delegation_refusals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str | None
) -> None:
    _operator(tmp_path, monkeypatch)
    assert run(ca_group, ["delegate", *ALICE_ARGS]).exit_code == 0
    common = ["--ca", "alice.bundle", "--ca-key", "alice.bundle", "--endpoint", "h"]
    result = run(ca_group, ["delegate", *args, *common])
    assert result.exit_code == 124
    if message is not None:
        assert result.stderr.splitlines()[-1] + "\n" == message
    else:
        assert result.stderr.startswith("error: ")
    assert sorted(p.name for p in tmp_path.glob("*.bundle")) == ["alice.bundle"]


def test_delegation_refuses_to_overwrite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _operator(tmp_path, monkeypatch)
    assert run(ca_group, ["delegate", *ALICE_ARGS]).exit_code == 0
    before = (tmp_path / "alice.bundle").read_bytes()
    result = run(ca_group, ["delegate", *ALICE_ARGS])
    assert (result.exit_code, result.stderr) == (
        124,
        "error: refusing to overwrite alice.bundle: move it away or choose another name\n",
    )
    assert (tmp_path / "alice.bundle").read_bytes() == before


def test_delegation_without_network_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _operator(tmp_path, monkeypatch)
    result = run(
        ca_group,
        [
            "delegate",
            "solo",
            "1",
            "--mem",
            "32",
            "--ca",
            "cacert.pem",
            "--endpoint",
            "h",
            "--key-type",
            "p521",
        ],
    )
    assert result.exit_code == 0
    assert result.stderr == "warning: policy without any network access\n"


# -- inspect --------------------------------------------------------------------


def test_inspect_policy_certificate_in_words() -> None:
    result = run(ca_group, ["inspect", str(CERTS / "ca/alice.pem")])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "certificate: delegated CA /CN=alice, issued by /CN=ca"
    assert lines[-1] == (
        "  albatross policy: 2 unikernels 0 CPUids 64 MB memory 100 MB block, bridges: service"
    )
    assert (
        "  extension keyUsage (critical): digital_signature, content_commitment, key_cert_sign, "
        "crl_sign" in lines
    )


def test_inspect_leaf_json(tmp_path: Path) -> None:
    der = tmp_path / "leaf.der"
    der.write_bytes(load_certs(CERTS / "leaf/create.pem")[0].public_bytes(Encoding.DER))
    result = run(ca_group, ["inspect", "--json", str(der)])
    assert result.exit_code == 0
    (obj,) = json.loads(result.stdout)["objects"]
    assert obj["role"] == "request leaf" and obj["validity_seconds"] == 310
    command = obj["albatross"]["command"]
    assert command["type"] == "UnikernelCreate"
    assert command["config"]["memory"] == 16
    assert command["config"]["argv"] == ["--foo=1", "bar"]


def test_inspect_csr_chain_and_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _operator(tmp_path, monkeypatch)
    assert run(ca_group, ["delegate", *ALICE_ARGS]).exit_code == 0
    files = [str(CERTS / "ca/bob.req"), str(CERTS / "leaf/bob-create.chain.pem"), "alice.bundle"]
    result = run(ca_group, ["inspect", *files])
    assert result.exit_code == 0
    out = result.stdout
    assert (
        f"==> {files[0]} <==\ncertificate request: /CN=bob, ed25519 key, self-signature valid"
        in out
    )
    assert (
        "delegation bundle for alice: endpoint 127.0.0.1:1025, server name albatross.example" in out
    )
    assert "private key: ed25519 (not shown)" in out
    assert "BEGIN PRIVATE KEY" not in out
    result = run(ca_group, ["inspect", "--json", "alice.bundle", files[1]])
    parsed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(p["schema"], p["record"], p["file"]) for p in parsed] == [
        (1, "inspect", "alice.bundle"),
        (1, "inspect", files[1]),
    ]
    assert [p["type"] for p in parsed] == ["bundle", "objects"]
    assert [o["albatross"]["kind"] for o in parsed[1]["objects"]] == ["command", "policy", "policy"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "error: input file {} does not exist\n"),
        (
            b"hello",
            "error: no certificate, certificate request or private key found in the input "
            "(neither PEM nor DER)\n",
        ),
        (
            b"-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n",
            "error: no certificate, certificate request or private key found in the input\n",
        ),
        (b"Albatross-Bundle: 9\n", "error: not an albatross bundle of version 1 (found '9')\n"),
    ],
)
def test_inspect_errors(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "input"
    if content is not None:
        path.write_bytes(content)
    result = run(ca_group, ["inspect", str(path)])
    assert (result.exit_code, result.stderr) == (124, message.format(path))


def test_register_mounts_the_commands() -> None:
    import click

    @click.group()
    def root() -> None:
        """Test root."""

    register(root)
    assert sorted(root.commands) == ["ca", "generate", "sign"]
    result = CliRunner().invoke(root, ["ca", "--help"])
    assert result.exit_code == 0 and "delegate" in result.stdout and "inspect" in result.stdout


def test_delegation_needs_a_ca_signer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _operator(tmp_path, monkeypatch)
    args = [
        "delegate",
        "x",
        "1",
        "--mem",
        "32",
        "--ca",
        "server.pem",
        "--ca-key",
        "server.key",
        "--endpoint",
        "h",
    ]
    result = run(ca_group, args)
    assert result.exit_code == 124
    assert result.stderr.splitlines()[-1] == (
        "error: /CN=server is not a CA certificate (needs CA:TRUE and keyCertSign): "
        "delegate with your CA certificate, not a leaf or server certificate"
    )


@pytest.mark.parametrize(
    ("shift", "message"),
    [
        (
            dt.timedelta(days=366),
            "error: /CN=alice expired at 2027-11-27 18:08:12 UTC: renew it first",
        ),
        (dt.timedelta(days=-1), "error: /CN=alice is not valid before 2026-11-27 18:08:02 UTC"),
    ],
)
def test_delegation_needs_a_valid_signer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shift: dt.timedelta, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ca.cli, "now", lambda: NOW + shift)
    args = [
        "delegate",
        "x",
        "1",
        "--mem",
        "32",
        "--ca",
        str(CERTS / "ca/alice.pem"),
        "--ca-key",
        str(CERTS / "ca/alice.key"),
        "--server-ca",
        str(CERTS / "ca/root-cacert.pem"),
        "--endpoint",
        "h",
    ]
    result = run(ca_group, args)
    assert (result.exit_code, result.stderr.splitlines()[-1]) == (124, message)
    monkeypatch.setattr(ca.cli, "now", lambda: NOW)  # the positive twin
    result = run(ca_group, args)
    assert result.exit_code == 0, result.stderr


def test_delegation_warnings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _operator(tmp_path, monkeypatch)
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    assert run(generate_command, ["other", "db"]).exit_code == 0
    monkeypatch.chdir(tmp_path)
    args = [
        "delegate",
        "x",
        "1",
        "--mem",
        "32",
        "--bridge",
        "b",
        "--ca",
        "cacert.pem",
        "--ca-key",
        "ca.key",
        "--endpoint",
        "h",
        "--days",
        "4000",
        "--server-ca",
        "other/cacert.pem",
    ]
    result = run(ca_group, args)
    assert result.exit_code == 0
    root = load_certs(tmp_path / "cacert.pem")[0]
    assert load_bundle(tmp_path / "x.bundle").chain[0].not_valid_after_utc == (
        root.not_valid_after_utc
    )
    assert result.stderr == (
        "warning: the delegation ends with its issuer /CN=ca on 2036-11-24, earlier than --days "
        "asked: renew /CN=ca and delegate again before then\n"
        "warning: the chain does not lead to the server CA in the bundle; albatross-client "
        "would refuse it (exit 116) unless the friend gets the right --server-ca\n"
    )


def test_delegation_from_a_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _operator(tmp_path, monkeypatch)
    assert run(ca_group, ["delegate", *ALICE_ARGS]).exit_code == 0
    (tmp_path / "cacert.pem").unlink()  # everything must come from alice's bundle
    result = run(
        ca_group,
        ["delegate", "bob", "1", "--mem", "32", "--bridge", "service", "--bundle", "alice.bundle"],
    )
    assert result.exit_code == 0, result.stderr
    bob, alice = load_bundle(tmp_path / "bob.bundle"), load_bundle(tmp_path / "alice.bundle")
    assert bob.server_ca == alice.server_ca
    assert (bob.endpoint, bob.server_name) == ("127.0.0.1:1025", "albatross.example")
    assert bob.chain[1:] == alice.chain
    result = run(
        ca_group,
        [
            "delegate",
            "carol",
            "1",
            "--mem",
            "32",
            "--bridge",
            "service",
            "--bundle",
            "alice.bundle",
            "--endpoint",
            "other:7",
            "--server-name",
            "other",
        ],
    )
    assert result.exit_code == 0
    assert load_bundle(tmp_path / "carol.bundle").endpoint == "other:7"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--bundle", "alice.bundle", "--ca", "cacert.pem"],
            "error: --bundle already holds the CA, its key and the server CA: "
            "drop --ca, --ca-key and --server-ca\n",
        ),
        (
            ["--ca", "cacert.pem"],
            "error: give the endpoint's address with --endpoint HOST[:PORT]\n",
        ),
        (["--bundle", "missing.bundle"], "error: bundle file missing.bundle does not exist\n"),
    ],
)
def test_delegation_source_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    _operator(tmp_path, monkeypatch)
    assert run(ca_group, ["delegate", *ALICE_ARGS]).exit_code == 0
    result = run(ca_group, ["delegate", "bob", "1", "--mem", "32", "--bridge", "s", *args])
    assert (result.exit_code, result.stderr) == (124, message)


def test_delegation_is_clamped_to_its_issuer_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _operator(tmp_path, monkeypatch)
    assert run(ca_group, ["delegate", *ALICE_ARGS]).exit_code == 0
    monkeypatch.setattr(ca.cli, "now", lambda: NOW + dt.timedelta(hours=1))
    result = run(
        ca_group,
        ["delegate", "bob", "1", "--mem", "32", "--bridge", "service", "--bundle", "alice.bundle"],
    )
    assert (result.exit_code, result.stderr) == (0, "")
    bob, alice = load_bundle(tmp_path / "bob.bundle"), load_bundle(tmp_path / "alice.bundle")
    assert bob.chain[0].not_valid_after_utc == alice.chain[0].not_valid_after_utc
    assert bob.chain[0].not_valid_before_utc == NOW + dt.timedelta(hours=1, seconds=-10)


def test_generate_keeps_a_root_of_another_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(generate_command, ["myca", "db"]).exit_code == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    result = run(generate_command, ["other", "db"])
    assert (result.exit_code, result.stdout) == (
        124,
        "albatross-client: [ERROR] error while generating: cacert.pem holds the CA /CN=myca of "
        "another key: every certificate it signed depends on it; move it away before generating "
        "a new CA\n",
    )
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing written
    assert run(generate_command, ["myca", "db", "--days", "20"]).exit_code == 0  # same key: fine


def test_inspect_reports_status_and_chain_links(tmp_path: Path) -> None:
    chain = load_certs(CERTS / "leaf/bob-create.chain.pem")  # leaf, bob, alice
    broken = tmp_path / "broken.pem"
    broken.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in (chain[0], chain[2])))
    result = run(ca_group, ["inspect", str(CERTS / "leaf/bob-create.chain.pem"), str(broken)])
    assert result.exit_code == 0
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert lines.count("signed by the next certificate: yes") == 2
    assert lines.count("signed by the next certificate: NO") == 1
    valid_lines = [line for line in lines if line.startswith("valid from")]
    assert [line.rsplit(", ", 1)[1] for line in valid_lines] == [
        "expired now",
        "valid now",
        "valid now",
        "expired now",
        "valid now",
    ]
    result = run(ca_group, ["inspect", "--json", str(broken)])
    objects = json.loads(result.stdout)["objects"]
    assert [o.get("signed_by_next") for o in objects] == [False, None]
    assert [o["status"] for o in objects] == ["expired", "valid"]


@pytest.mark.parametrize(
    "args", [["ca", "db", "--server", "ca"], ["x", "db", "--server", "cacert"]]
)
def test_generate_refuses_a_server_sharing_the_ca_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run(generate_command, args)
    assert (result.exit_code, result.stdout) == (
        124,
        f"albatross-client: [ERROR] error while generating: the server name {args[-1]!r} would "
        "share files with the CA: choose another --server\n",
    )
    assert list(tmp_path.iterdir()) == []


def test_sign_refuses_a_tampered_csr_before_any_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    der = bytearray(load_csr_der(CERTS / "ca/bob.req"))
    der[-1] ^= 1
    (tmp_path / "bad.req").write_bytes(bytes(der))
    args = [str(CERTS / "ca/alice.pem"), "db", str(CERTS / "ca/alice.key"), "bad.req"]
    result = run(sign_command, args)
    assert (result.exit_code, result.stdout) == (
        124,
        "albatross-client: [ERROR] error while signing: CSR file bad.req: its self-signature "
        "does not verify\n",
    )


def load_csr_der(path: Path) -> bytes:
    return x509.load_pem_x509_csr(path.read_bytes()).public_bytes(Encoding.DER)


def test_inspect_shows_what_the_endpoint_would_send() -> None:
    result = run(ca_group, ["inspect", str(CERTS / "leaf/bob-create.chain.pem")])
    assert result.exit_code == 0
    tail = result.stdout.splitlines()[-4:]
    assert tail[:3] == [
        "the endpoint would send to the daemon:",
        "  [unikernel: alice:bob:]: policy add policy: 1 unikernels 0 CPUids 32 MB memory "
        "10 MB block, bridges: service",
        "  [unikernel: alice:]: policy add policy: 2 unikernels 0 CPUids 64 MB memory "
        "100 MB block, bridges: service",
    ]
    assert tail[3].startswith("  [unikernel: alice:bob:b1]: unikernel create typ solo5")
    result = run(ca_group, ["inspect", "--json", str(CERTS / "leaf/bob-create.chain.pem")])
    request = json.loads(result.stdout)["request"]
    assert request["name"] == "alice:bob:b1"
    assert [p["path"] for p in request["policies"]] == ["alice:bob:", "alice:"]


def test_inspect_shows_why_the_endpoint_would_refuse() -> None:
    # case 002: a remote `policy` for the root path has an empty leaf CN
    result = run(ca_group, ["inspect", str(CASES / "002-policy-root-nopath/chain.pem")])
    assert result.exit_code == 0
    last = result.stdout.splitlines()[-1]
    assert last.startswith("the endpoint would refuse this chain: ")  # the reason is the endpoint's
    assert "leaf" in last
    # a CA alone is not a request
    result = run(ca_group, ["inspect", "--json", str(CERTS / "ca/alice.pem")])
    assert "request" not in json.loads(result.stdout)


def test_inspect_reads_stdin() -> None:
    data = (CERTS / "ca/bob.req").read_bytes()
    result = CliRunner().invoke(ca_group, ["inspect", "-"], input=data)
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == (
        "certificate request: /CN=bob, ed25519 key, self-signature valid"
    )
