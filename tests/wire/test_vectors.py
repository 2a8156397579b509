"""Every captured frame, certificate and CSR in ../shared/vectors decodes to what the
capture describes and re-encodes to the identical bytes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from core.wire import (
    EXTENSION_OID,
    BlockDeviceImage,
    BlockDeviceList,
    BlockSet,
    Command,
    ConsoleList,
    ConsoleListInactive,
    ConsoleSubscribe,
    Failure,
    Message,
    NetIf,
    PolicyAdd,
    PolicyInfo,
    PolicyList,
    StatsSubscribe,
    StringReply,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelGet,
    UnikernelImage,
    UnikernelInfo,
    UnikernelInfoList,
    decode_extension,
    decode_message,
    encode_extension,
    encode_message,
)
from core.wire.messages import (
    BlockAdd,
    BlockDevice,
    BlockInfo,
    BlockRemove,
    Restart,
)
from tests.vectors import CASES, CERTS, VECTORS, Frame, case_dirs, case_frames, load_case

OID = x509.ObjectIdentifier(EXTENSION_OID)


def _message_frames() -> Iterator[Frame]:
    """Frames holding a wire message (not raw block-set stream chunks or end markers)."""
    for case in case_dirs():
        for frames in (case_frames(case, setup=True), case_frames(case)):
            raw_stream: set[tuple[str, int]] = set()
            for f in frames:
                key = (f.sock, f.conn)
                if f.length <= 0:
                    raw_stream.discard(key)
                    continue
                if f.direction == "to_daemon" and key in raw_stream:
                    continue
                yield f
                if f.direction == "to_daemon":
                    msg = decode_message(f.body)
                    if isinstance(msg.payload, BlockSet):
                        raw_stream.add(key)


MESSAGE_FRAMES = list(_message_frames())


def test_the_corpus_is_there() -> None:
    # Guards against a silently empty parametrisation if ../shared moved.
    assert len(MESSAGE_FRAMES) > 150
    assert len(case_dirs()) > 80


@pytest.mark.parametrize("frame", MESSAGE_FRAMES, ids=lambda f: f.id)
def test_frame_roundtrips(frame: Frame) -> None:
    assert int.from_bytes(frame.raw[:4], "big") == len(frame.body)
    msg = decode_message(frame.body)
    assert msg.header.version == 5
    assert encode_message(msg) == frame.body


MESSAGE_IDS = {f.id for f in MESSAGE_FRAMES}


def _command_messages(case: Path) -> list[Message]:
    return [
        decode_message(f.body)
        for f in case_frames(case)
        if f.direction == "to_daemon" and f.id in MESSAGE_IDS
    ]


CASES_WITH_FRAMES = [c for c in case_dirs() if load_case(c)["names_on_wire"]]


@pytest.mark.parametrize("case", CASES_WITH_FRAMES, ids=lambda c: c.name)
def test_case_commands_match_the_description(case: Path) -> None:
    """Names, policy pushes and the final command are the ones the capture describes."""
    info = load_case(case)
    sent = _command_messages(case)
    names = [(n["socket"], n["name"]) for n in info["names_on_wire"]]
    assert [str(m.header.name) for m in sent][: len(names)] == [n for _, n in names]

    pushed = [m for m in sent if isinstance(m.payload, PolicyAdd)]
    expected = info["policies_in_chain"]
    assert len(pushed) == len(expected)
    for msg, pol in zip(pushed, expected, strict=True):
        assert isinstance(msg.payload, PolicyAdd)
        assert msg.payload.policy.describe() == pol["policy"]
        assert encode_extension(msg.payload) == bytes.fromhex(pol["albatross_ext_hex"])
        assert str(msg.header.name).rstrip(":").split(":")[-1] == pol["cn"].lower()

    # The first command after the policy pushes is the one carried by the client's leaf
    # certificate (case 030 opens a second connection for the block data).
    leaf_hex = info.get("leaf_extension_hex")
    if leaf_hex:
        assert sent[len(pushed)].payload == decode_extension(bytes.fromhex(leaf_hex))


@pytest.mark.parametrize("case", CASES_WITH_FRAMES, ids=lambda c: c.name)
def test_case_reply_matches_client_output(case: Path) -> None:
    """The daemon's reply to the command is what the real client printed."""
    info = load_case(case)
    out = info["expected_outcome"]["client_output"] + info["expected_outcome"]["client_stderr"]
    frames = [f for f in case_frames(case) if f.id in MESSAGE_IDS]
    first_conn = frames[0].conn
    sent = [
        decode_message(f.body)
        for f in frames
        if f.conn == first_conn and f.direction == "to_daemon"
    ]
    replies = [
        decode_message(f.body)
        for f in frames
        if f.conn == first_conn and f.direction == "from_daemon"
    ]
    pushed = sum(isinstance(m.payload, PolicyAdd) for m in sent)
    reply = replies[pushed].payload
    expected: list[str]
    match reply:
        case Failure(message):
            expected = [f"command failed {message}"]
        case StringReply(text):
            expected = [f"success: {text}"]
        case UnikernelInfoList(unikernels=()):
            expected = ["no unikernels"]
        case UnikernelInfoList(unikernels):
            expected = [f"{name.pretty()}: typ solo5" for name, _ in unikernels]
        case PolicyList(policies):
            expected = [f"{name.pretty()}: {policy}" for name, policy in policies]
        case BlockDeviceList(devices):
            expected = [
                f"block {d.name.pretty()} size {d.size} MB active {str(d.active).lower()}"
                for d in devices
            ]
        case ConsoleList(consoles):
            expected = [c.pretty() for c in consoles]
        case UnikernelImage(compressed, image):
            expected = [f"image (compression {str(compressed).lower()}) {len(image)} bytes"]
        case BlockDeviceImage(compressed):
            expected = [f"block device compressed {str(compressed).lower()}"]
        case _:
            pytest.fail(f"unexpected reply {reply!r}")
    for line in expected:
        assert line in out


# -- certificates and CSRs ------------------------------------------------


def _certificates() -> Iterator[tuple[str, x509.Certificate | x509.CertificateSigningRequest]]:
    paths = sorted(VECTORS.glob("certs/**/*.pem")) + sorted(CASES.glob("*/*.pem"))
    for path in paths:
        for i, cert in enumerate(x509.load_pem_x509_certificates(path.read_bytes())):
            yield f"{path.relative_to(VECTORS)}#{i}", cert
    for path in sorted(VECTORS.glob("**/*.req")):
        yield str(path.relative_to(VECTORS)), x509.load_pem_x509_csr(path.read_bytes())


CERTIFICATES = list(_certificates())


def _extension(
    obj: x509.Certificate | x509.CertificateSigningRequest,
) -> x509.Extension[x509.UnrecognizedExtension] | None:
    try:
        ext = obj.extensions.get_extension_for_oid(OID)
    except x509.ExtensionNotFound:
        return None
    assert isinstance(ext.value, x509.UnrecognizedExtension)
    return ext  # type: ignore[return-value]


@pytest.mark.parametrize(("where", "obj"), CERTIFICATES, ids=[w for w, _ in CERTIFICATES])
def test_certificate_extension_roundtrips(
    where: str, obj: x509.Certificate | x509.CertificateSigningRequest
) -> None:
    ext = _extension(obj)
    if ext is None:
        # Only the root CA and server certificates carry no albatross extension.
        cn = obj.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
        assert cn in ("ca", "server", "myca", "srv1"), where
        return
    assert ext.critical is False
    raw = ext.value.value
    assert encode_extension(decode_extension(raw)) == raw


def _leaf_vectors() -> list[Path]:
    return sorted((CERTS / "leaf").glob("*.json"))


@pytest.mark.parametrize("path", _leaf_vectors(), ids=lambda p: p.stem)
def test_leaf_vector_content(path: Path) -> None:
    """Each leaf vector's command decodes to the fields its JSON description lists."""
    desc = json.loads(path.read_text())
    fields = desc["fields"]
    cert = x509.load_pem_x509_certificate(path.with_suffix(".pem").read_bytes())
    ext = _extension(cert)
    assert ext is not None
    assert ext.value.value.hex() == desc["leaf"]["albatross_ext_hex"]
    command = decode_extension(ext.value.value)
    kind = fields["command"]
    assert command == _expected_command(kind, fields, command)


def _expected_command(kind: str, fields: dict[str, object], command: Command) -> Command:
    """Rebuild the expected command from the vector's words (independently of the decoder)."""
    simple: dict[str, Command] = {
        "unikernel info": UnikernelInfo(),
        "unikernel destroy": UnikernelDestroy(),
        "unikernel get": UnikernelGet(9),
        "console list_inactive": ConsoleListInactive(),
        "stats subscribe": StatsSubscribe(),
        "block info": BlockInfo(),
        "block remove": BlockRemove(),
        "policy info": PolicyInfo(),
    }
    if kind in simple:
        return simple[kind]
    if kind == "console subscribe":
        return ConsoleSubscribe(count=int(str(fields["count"])))
    if kind == "block add":
        return BlockAdd(int(str(fields["size_mb"])))
    if kind == "block set":
        return BlockSet(bool(fields["compressed"]))
    assert kind in ("unikernel create", "unikernel force_create"), kind
    assert isinstance(command, UnikernelCreate)
    cfg = command.config
    # The image is checked against the image file itself in the client tests; here we
    # check every other field against the description.
    assert cfg.memory == fields["mem"]
    assert cfg.cpuids == frozenset({fields.get("cpuid", 0)})
    assert cfg.compressed is fields.get("compressed", True)
    assert cfg.argv == (tuple(fields["argv"]) if "argv" in fields else None)  # type: ignore[arg-type]
    bridges = fields.get("bridges", [])
    assert cfg.bridges == frozenset(NetIf(n, b, m) for n, b, m in bridges)  # type: ignore[attr-defined]
    blocks = fields.get("block_devices", [])
    assert cfg.blocks == frozenset(BlockDevice(n, d, s) for n, d, s in blocks)  # type: ignore[attr-defined]
    if "fail_behaviour" in fields:
        assert cfg.fail_behaviour == Restart()
    return UnikernelCreate(cfg, force=kind.endswith("force_create"))


def test_policy_texts_match_the_intermediates() -> None:
    texts = json.loads((VECTORS / "policy-texts.json").read_text())
    for name, text in texts.items():
        cert = x509.load_pem_x509_certificate((CERTS / "ca" / f"{name}.pem").read_bytes())
        ext = _extension(cert)
        assert ext is not None
        command = decode_extension(ext.value.value)
        assert isinstance(command, PolicyAdd)
        assert command.policy.describe() == text


def test_case_chains_match_case_json() -> None:
    checked = 0
    for case in case_dirs():
        chain_file = case / "chain.pem"
        if not chain_file.exists():
            continue
        info = load_case(case)
        certs = x509.load_pem_x509_certificates(chain_file.read_bytes())
        for cert, described in zip(certs, info["chain"], strict=True):
            ext = _extension(cert)
            got = None if ext is None else ext.value.value.hex()
            assert got == described["albatross_ext_hex"]
            checked += 1
    assert checked > 100
