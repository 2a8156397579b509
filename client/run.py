"""Run one command against its destination: local socket, remote endpoint or CSR files.

This is albatross-client's ``jump`` (client/albatross_client.ml), step by step as in
behaviour.md §4.2/§4.3; every failure is a :class:`client.errors.ClientError`
carrying albatross's exit code.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from pathlib import Path

import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from ca.profiles import PrivateKey, generate_key, key_matches, make_csr
from client.commands import leaf_cn
from client.destination import Csr, Destination, Local, Remote
from client.errors import CliFailed, CommunicationFailed
from client.expiry import expiring, warning_text
from client.leafcert import (
    LeafChain,
    load_ca,
    make_leaf,
    pem_chain,
    validate_chain,
)
from client.session import Settings, read_replies, send_data, send_frame
from client.transport import connect_local, connect_remote
from core.certs import albatross_command
from core.errors import AlbatrossError
from core.pemfiles import load_certificates, load_key
from core.routing import ReplyMode, route
from core.wire import Command, Header, Message, Name, encode_message
from durable.files import write_file
from transport.framed import FramedStream

__all__ = ["DataSource", "build_chain", "execute", "execute_certificate", "write_csr"]

#: A data stream to upload after the command (block set): a function making the chunks.
DataSource = Callable[[], Iterable[bytes]]


def hexdump(data: bytes) -> str:
    lines = []
    for i in range(0, len(data), 16):
        row = data[i : i + 16]
        lines.append(f"{i:08x}: " + " ".join(f"{b:02x}" for b in row))
    return "\n".join(lines)


async def _run_local(
    command: Command, name: Name, dest: Local, settings: Settings, data: DataSource | None
) -> None:
    target = route(command)
    wire = encode_message(Message(Header(name), command))
    if dest.socket == "-":
        settings.printer.app("out:\n" + hexdump(wire))
        raise CommunicationFailed("printed the command instead of sending it", log="none")
    path = dest.socket_path(target.socket)
    stream = FramedStream(await connect_local(path), settings.max_frame, path)
    try:
        await send_frame(stream, wire)
        if data is not None:
            await send_data(stream, data(), _upload_meter(settings, data), settings.reply_timeout)
        await read_replies(stream, target.mode, settings)
    finally:
        await stream.aclose()


def _upload_meter(settings: Settings, data: DataSource) -> Callable[[int], None] | None:
    """The progress of an upload: the file read so far when *data* knows (FileUpload)."""
    meter = settings.progress
    if meter is None:
        return None
    meter.begin(getattr(data, "total", None), "uploading")
    return lambda sent: meter(getattr(data, "done", sent))


def build_chain(command: Command, name: Name, dest: Remote, now: dt.datetime) -> LeafChain:
    """Steps 1-4 of remote mode: read the CA, derive the CN, check and sign the leaf."""
    ca = load_ca(dest.ca, dest.ca_key)
    try:
        cn = leaf_cn(command, name)
    except AlbatrossError as exc:
        raise CliFailed(exc.message, log="term") from None
    return make_leaf(ca, command, cn, dest.key_type, now)


async def _run_chain(
    chain: LeafChain,
    mode: ReplyMode,
    dest: Remote,
    settings: Settings,
    data: DataSource | None,
    now: dt.datetime,
) -> None:
    anchors = load_certificates(dest.server_ca, "server CA")
    validate_chain(chain, anchors, now)
    if dest.host == "-":
        cas, leaf_pem = pem_chain(chain)
        settings.printer.app("intermediate:\n" + "\n\n".join(cas) + "\nleaf:\n" + leaf_pem)
        raise CommunicationFailed("printed the chain instead of connecting", log="none")
    meter = settings.progress
    if meter is not None:  # a create's image travels in the chain: tens of MiB, maybe
        meter.begin(sum(len(c.public_bytes(Encoding.DER)) for c in (chain.leaf, *chain.chain)),
                    "sending certificate")  # fmt: skip
    tls = await connect_remote(
        dest.host, dest.port, chain, anchors, dest.server_name, now, sent=meter
    )
    if meter is not None:
        meter.finish()
    stream = FramedStream(tls, settings.max_frame, f"{dest.host}:{dest.port}")
    try:
        if data is not None:
            await send_data(stream, data(), _upload_meter(settings, data), settings.reply_timeout)
        await read_replies(stream, mode, settings)
    finally:
        with trio.move_on_after(5):
            await stream.aclose()


async def execute(
    command: Command,
    name: Name,
    dest: Destination,
    settings: Settings,
    data: DataSource | None = None,
) -> None:
    """Send *command* for *name* to *dest* and print the replies (raises ClientError)."""
    if isinstance(dest, Local):
        await _run_local(command, name, dest, settings, data)
    elif isinstance(dest, Remote):
        now = settings.clock()
        chain = build_chain(command, name, dest, now)
        warn_expiring(chain.chain, now, settings)
        await _run_chain(chain, route(command).mode, dest, settings, data, now)
    else:
        write_csr(command, name, dest, Path.cwd())


async def execute_certificate(cert: Path, key: Path, dest: Remote, settings: Settings) -> None:
    """``certificate CERT KEY``: connect with a pre-signed chain and its key."""
    private = load_key(key, "key file")
    certs = load_certificates(cert, "certificate file")
    if not key_matches(private, certs[0].public_key()):
        raise CliFailed("Public key of certificate doesn't match private key")
    try:
        command = albatross_command(certs[0])
    except AlbatrossError:
        command = None
    mode = route(command).mode if command is not None else ReplyMode.READ
    chain = LeafChain(certs[0], tuple(certs[1:]), private)
    warn_expiring(certs[1:], settings.clock(), settings)  # a leaf is short-lived by design
    await _run_chain(chain, mode, dest, settings, None, settings.clock())


def warn_expiring(certs: Iterable[x509.Certificate], now: dt.datetime, settings: Settings) -> None:
    """On stderr, once per command: each CA of the chain in use ending within 14 days.

    The leaf is not among *certs*: alba's live 5 minutes, a pre-signed one as long as
    its signer chose, and neither is renewed but made anew.
    """
    for cert in certs:
        key = cert.fingerprint(hashes.SHA256())
        if key in settings.expiry_warned:
            continue
        settings.expiry_warned.add(key)
        for soon in expiring([cert], now):
            settings.printer.err(warning_text(settings.printer.prog, soon, now))


def _private_key(path: Path, key_type: str) -> PrivateKey:
    """albatross ``priv_key``: reuse ``<name>.key`` or create it with mode 0400."""
    if path.exists():
        return load_key(path, "key file")
    key = generate_key(key_type)
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    write_file(path, pem, mode=0o400, overwrite=False)
    return key


def write_csr(command: Command, name: Name, dest: Csr, directory: Path) -> Path:
    """CSR mode: ``<CN>.key`` (created 0400 or reused) and ``<CN>.req``."""
    try:
        cn = leaf_cn(command, name)
        key = _private_key(directory / f"{cn}.key", dest.key_type)
        csr: x509.CertificateSigningRequest = make_csr(key, cn, command)
    except AlbatrossError as exc:
        raise CliFailed(f"error while creating CSR: {exc.message}") from None
    except (OSError, ValueError, TypeError) as exc:
        raise CliFailed(f"error while creating CSR: {exc}") from None
    out = directory / f"{cn}.req"
    out.write_bytes(csr.public_bytes(Encoding.PEM))
    return out
