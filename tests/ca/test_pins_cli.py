"""``alba ca delegate --pin-digest/--pin-job``, and the pins in the inspector and explain."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from ca.cli import ca_group
from ca.store import load_bundle
from core.certs import pins_of
from core.pins import Pins
from core.wire import UnikernelConfig, UnikernelCreate
from tests.ca.test_cli import ALICE_ARGS, _operator, run
from tests.security.pki import NOW, create, policy, root
from tlsendpoint.security.explain import explain_chain

A = hashlib.sha256(b"build a").hexdigest()
B = hashlib.sha256(b"build b").hexdigest()


def test_delegate_with_pins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _operator(tmp_path, monkeypatch)
    pins = ["--pin-digest", B, "--pin-digest", A.upper(), "--pin-job", "hello"]
    result = run(ca_group, ["delegate", *ALICE_ARGS, *pins])
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.splitlines()[-1] == (
        f"pinned: digests {min(A, B)}, {max(A, B)}; jobs hello (checked by alba update)"
    )
    cert = load_bundle(tmp_path / "alice.bundle").chain[0]
    assert pins_of(cert) == Pins(
        frozenset({bytes.fromhex(A), bytes.fromhex(B)}), frozenset({"hello"})
    )
    described = json.loads(run(ca_group, ["inspect", "--json", "alice.bundle"]).stdout)
    text = run(ca_group, ["inspect", "alice.bundle"]).stdout
    assert f"  pins: digests {min(A, B)}, {max(A, B)}; jobs hello (checked by alba update)" in text
    assert "reproducible-build pins (albatross-gateway)" in text
    assert _first_pins(described) == {"digests": sorted([A, B]), "jobs": ["hello"]}


def _first_pins(described: object) -> object:
    """The pins of the first certificate that has some, wherever the JSON nests it."""
    if isinstance(described, dict):
        if isinstance(described.get("pins"), dict):
            return {k: v for k, v in described["pins"].items() if k != "text"}
        values: list[object] = list(described.values())
    elif isinstance(described, list):
        values = list(described)
    else:
        return None
    for value in values:
        found = _first_pins(value)
        if found is not None:
            return found
    return None


def test_job_pins_alone_warn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _operator(tmp_path, monkeypatch)
    result = run(ca_group, ["delegate", *ALICE_ARGS, "--pin-job", "hello"])
    assert result.exit_code == 0
    assert result.stderr == (
        "warning: job pins only: the endpoint cannot tie an image to a builder-web job,"
        " so it enforces nothing; alba update checks them (add --pin-digest to enforce)\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pin-digest", "abc"], "error: bad SHA-256 digest 'abc': give 64 hex digits\n"),
        (
            ["--pin-job", "../x"],
            "error: bad builder-web job name '../x': 1 to 64 letters, digits, '-', '_' or '.',"
            " not starting with '.'\n",
        ),
    ],
)
def test_bad_pins_change_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    _operator(tmp_path, monkeypatch)
    result = run(ca_group, ["delegate", *ALICE_ARGS, *args])
    assert (result.exit_code, result.stderr) == (124, message)
    assert not (tmp_path / "alice.bundle").exists()


def test_explain_names_the_pinning_hop() -> None:
    ca = root()
    alice = ca.delegate("alice", policy(), pins=Pins(frozenset({bytes.fromhex(A)})))
    bob = alice.delegate("bob", policy(), pins=Pins(None, frozenset({"hello"})))
    verdict = explain_chain(bob.leaf_chain("b1", create()), NOW, anchor=ca.cert)
    assert (verdict.allowed, verdict.stage) == (False, "pins")
    digest = hashlib.sha256(create().config.image).hexdigest()
    assert verdict.reason == (
        f"image sha256 {digest} is not pinned by the delegation alice: (1 digest(s) allowed):"
        " ask its delegator to add it, or deploy a pinned build"
    )
    assert verdict.notes[1:] == (
        f"delegation alice: pins digests {A}",
        "delegation alice:bob: pins jobs hello (checked by alba update)",
    )
    uploaded = explain_chain(
        bob.leaf_chain("b1", UnikernelCreate(UnikernelConfig(b""))), NOW, anchor=ca.cert
    )
    assert uploaded.allowed
    assert "the image is uploaded after the handshake: its digest is checked then" in uploaded.notes
