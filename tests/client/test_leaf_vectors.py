"""Done-when: the leaf our CLI builds for a captured command line matches albatross's.

For every ``vectors/certs/leaf/*.json`` we run the captured command line through
``alba`` with ``--destination -`` (print the chain, do not connect) in the case's
folder and compare the leaf with the captured one: the albatross extension
byte for byte, the other extensions (order and criticality), issuer, subject and
the 310-second validity.  A zlib stream from OCaml's ``decompress`` cannot be
reproduced byte for byte by Python's zlib, so for a compressed create we check
that the images inflate to the same file and that the extension is
byte-identical once the captured compressed image is put into our command.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import zlib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509

from client.cli import alba
from core.clock import fixed_clock
from core.wire import (
    EXTENSION_OID,
    UnikernelCreate,
    decode_extension,
    encode_extension,
)
from tests.vectors import CASES, CERTS, captured_at

LEAVES = sorted((CERTS / "leaf").glob("*.json"))


def _alba_args(command_line: str) -> list[str]:
    words = shlex.split(command_line)
    words = words[words.index("albatross-client") + 1 :]
    i = words.index("--destination")
    words[i + 1] = "-"
    return words


def _leaf_from_output(stdout: str) -> x509.Certificate:
    leaf_pem = stdout.split("leaf:\n", 1)[1]
    return x509.load_pem_x509_certificate(leaf_pem.encode())


def _ext(cert: x509.Certificate) -> bytes:
    ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(EXTENSION_OID))
    assert not ext.critical
    assert isinstance(ext.value, x509.UnrecognizedExtension)
    return ext.value.value


def _build(spec: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> tuple[x509.Certificate, str]:
    monkeypatch.chdir(CASES / spec["source_case"])
    clock = fixed_clock(captured_at(spec["source_case"]))  # the captured CAs, as then
    result = CliRunner().invoke(
        alba, _alba_args(spec["command_line"]), prog_name="albatross-client", obj=clock
    )
    assert result.exit_code == 121, result.output
    assert result.output.startswith("intermediate:\n-----BEGIN CERTIFICATE-----\n")
    return _leaf_from_output(result.output), result.output


@pytest.mark.parametrize("path", LEAVES, ids=[p.stem for p in LEAVES])
def test_extension_matches_capture(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = json.loads(path.read_text())
    captured_ext = bytes.fromhex(spec["leaf"]["albatross_ext_hex"])
    leaf, _ = _build(spec, monkeypatch)
    ours = _ext(leaf)
    theirs_cmd = decode_extension(captured_ext)
    our_cmd = decode_extension(ours)
    if isinstance(our_cmd, UnikernelCreate) and our_cmd.config.compressed:
        assert isinstance(theirs_cmd, UnikernelCreate)
        assert zlib.decompress(our_cmd.config.image) == zlib.decompress(theirs_cmd.config.image)
        config = dataclasses.replace(our_cmd.config, image=theirs_cmd.config.image)
        ours = encode_extension(dataclasses.replace(our_cmd, config=config))
    assert ours.hex() == captured_ext.hex()


@pytest.mark.parametrize("path", LEAVES, ids=[p.stem for p in LEAVES])
def test_certificate_profile_matches_capture(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = json.loads(path.read_text())
    leaf, output = _build(spec, monkeypatch)
    captured = x509.load_pem_x509_certificate((CERTS / "leaf" / f"{path.stem}.pem").read_bytes())
    assert [(e.oid.dotted_string, e.critical) for e in leaf.extensions] == [
        (e.oid.dotted_string, e.critical) for e in captured.extensions
    ]
    for cls in (x509.KeyUsage, x509.BasicConstraints, x509.ExtendedKeyUsage):
        assert leaf.extensions.get_extension_for_class(cls).value == (
            captured.extensions.get_extension_for_class(cls).value
        )
    assert leaf.subject == captured.subject
    assert leaf.issuer == captured.issuer
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime.total_seconds() == spec["leaf"]["validity_seconds"] == 310
    # The CA chain printed before the leaf is the chain albatross sent after it.
    chain = x509.load_pem_x509_certificates(
        (CERTS / "leaf" / f"{path.stem}.chain.pem").read_bytes()
    )
    printed = x509.load_pem_x509_certificates(output.split("leaf:\n")[0].encode())
    assert printed == chain[1:]
