"""Reproducible-build pins through the real endpoint and the stand-in (issue 15 point 3).

Each refusal has an acceptance twin: the pinned image runs, another one is refused with
the hop (the delegation's CN path) and the digest named, and nothing reaches vmmd.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from cryptography import x509

from ca import profiles
from core.authorize import authorize
from core.certs import PIN_EXTENSION_OID
from core.chainrules import chain_problems
from core.pins import Pins
from core.wire import (
    Command,
    Name,
    Payload,
    PolicyAdd,
    StringReply,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelRestart,
)
from core.wire.compress import compress
from standin.images import make_image
from tests.security.pki import Ca, root
from tests.security.rig import failure, now, open_rig, small
from tests.security.test_e2e_attacks import names_on_host

CREATED = StringReply("created unikernel")
OTHER = make_image(banner="another build")


def sha(image: bytes) -> bytes:
    return hashlib.sha256(image).digest()


def create(image: bytes, *, compressed: bool = False, force: bool = False) -> UnikernelCreate:
    data = compress(image) if compressed else image
    config = UnikernelConfig(data, memory=32, cpuids=frozenset({0}), compressed=compressed)
    return UnikernelCreate(config, force=force)


def refusal(image: bytes, hop: str, allowed: int = 1, what: str = "image") -> str:
    return (
        f"{what} sha256 {sha(image).hex()} is not pinned by the delegation {hop}"
        f" ({allowed} digest(s) allowed): ask its delegator to add it, or deploy a pinned build"
    )


async def test_a_pinned_digest_runs_and_another_image_is_refused(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        pins = Pins(frozenset({sha(rig.image)}))
        alice = rig.delegate(rig.root, "alice", small(unikernels=2), pins=pins)
        assert await rig.send(alice, "a1", create(rig.image)) == CREATED
        assert failure(await rig.send(alice, "a2", create(OTHER))) == refusal(OTHER, "alice:")
        # compressed, the digest is the uncompressed image's (as albatross and builder-web say)
        assert failure(await rig.send(alice, "a2", create(OTHER, compressed=True))) == refusal(
            OTHER, "alice:"
        )
        # update (create --force) is held to the same pins
        refused = failure(await rig.send(alice, "a1", create(OTHER, force=True)))
        assert refused == refusal(OTHER, "alice:")
        assert await names_on_host(rig.standin.socket("vmmd")) == ["alice:a1"]
        assert await rig.send(alice, "a1", create(rig.image, compressed=True, force=True)) == (
            CREATED
        )


async def test_an_uploaded_image_is_checked_after_the_upload(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        alice = rig.delegate(rig.root, "alice", small(), pins=Pins(frozenset({sha(rig.image)})))
        empty = create(b"")
        messages = await rig.harness.run(rig.identity(alice, "up", empty), upload=[OTHER])
        assert failure(messages[-1].payload) == refusal(OTHER, "alice:")
        assert await names_on_host(rig.standin.socket("vmmd")) == []
        half = len(rig.image) // 2
        messages = await rig.harness.run(
            rig.identity(alice, "up", empty), upload=[rig.image[:half], rig.image[half:]]
        )
        assert messages[-1].payload == CREATED


async def test_pins_intersect_along_the_chain(tmp_path: Path) -> None:
    third = make_image(banner="a third build")
    async with open_rig(tmp_path) as rig:
        alice = rig.delegate(
            rig.root,
            "alice",
            small(unikernels=3),
            pins=Pins(frozenset({sha(rig.image), sha(OTHER)})),
        )
        # bob widens to `third` and drops rig.image: only OTHER is in both
        bob = rig.delegate(
            alice, "bob", small(unikernels=3), pins=Pins(frozenset({sha(OTHER), sha(third)}))
        )
        carol = rig.delegate(bob, "carol", small(unikernels=3))  # no pins of its own: inherits
        assert failure(await rig.send(carol, "c1", create(third))) == refusal(third, "alice:", 2)
        assert failure(await rig.send(carol, "c1", create(rig.image))) == refusal(
            rig.image, "alice:bob:", 2
        )
        assert await rig.send(carol, "c1", create(OTHER)) == CREATED
        assert await names_on_host(rig.standin.socket("vmmd")) == ["alice:bob:carol:c1"]


async def test_a_restart_is_checked_against_the_image_vmmd_runs(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        before = rig.delegate(rig.root, "alice", small(unikernels=2))  # not pinned yet
        assert await rig.send(before, "old", create(OTHER)) == CREATED
        assert await rig.send(before, "new", create(rig.image)) == CREATED
        later = before.cert.not_valid_before_utc + dt.timedelta(seconds=1)  # anti-rollback: newer
        pins = Pins(frozenset({sha(rig.image)}))
        pinned = rig.delegate(rig.root, "alice", small(unikernels=2), pins=pins, not_before=later)
        refused = failure(await rig.send(pinned, "old", UnikernelRestart()))
        assert refused == refusal(OTHER, "alice:", what="the image of alice:old")
        assert await rig.send(pinned, "new", UnikernelRestart()) == CREATED  # albatross's text


async def test_job_pins_are_not_enforced_by_the_endpoint(tmp_path: Path) -> None:
    # The endpoint cannot tie an image to a builder-web job offline: a job-only pin is
    # checked by alba update, and the endpoint runs the image (documented in core/pins.py).
    async with open_rig(tmp_path) as rig:
        alice = rig.delegate(rig.root, "alice", small(), pins=Pins(None, frozenset({"hello"})))
        assert await rig.send(alice, "a1", create(OTHER)) == CREATED


async def test_an_undecodable_pin_refuses_the_chain(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        alice = _with_raw_pin(rig.root, "alice", bytes.fromhex("3003020102"))
        refused = failure(await rig.send(alice, "a1", create(rig.image)))
        assert (
            refused
            == "certificate CN=alice: pin extension: pins: version 2 is not supported (only 1)"
        )
        assert await names_on_host(rig.standin.socket("vmmd")) == []


def _with_raw_pin(parent: Ca, cn: str, value: bytes) -> Ca:
    key = profiles.generate_key()
    extra = ((x509.UnrecognizedExtension(x509.ObjectIdentifier(PIN_EXTENSION_OID), value), False),)
    cert = profiles._intermediate_from(  # a hostile or broken issuer: any bytes in the value
        profiles._subject(cn), parent.cert, parent.key, key.public_key(),
        PolicyAdd(small()), now(), dt.timedelta(days=1), extra=extra,
    )  # fmt: skip
    return Ca(cert, key, parent.chain)


def test_albatross_sees_a_pinned_delegation_as_an_unpinned_one() -> None:
    # The extension is non-critical: ocaml-x509's rules (core.chainrules) accept the chain
    # and the request albatross derives from it is the same as without the pins.
    top = root()
    pinned = top.delegate("alice", small(), pins=Pins(frozenset({sha(OTHER)}), frozenset({"web"})))
    plain = top.delegate("alice", small())
    ext = pinned.cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(PIN_EXTENSION_OID))
    assert ext.critical is False
    chains = [ca.leaf_chain("a1", create(OTHER)) for ca in (pinned, plain)]
    assert [chain_problems(chain) for chain in chains] == [[], []]
    assert authorize(chains[0]) == authorize(chains[1])


async def test_a_restart_whose_image_cannot_be_asked_for_says_why(tmp_path: Path) -> None:
    """vmmd unreachable for the pin's query: refused, and the reason is the pins, not quotas."""
    from tlsendpoint.security import SecurityRefusal

    async with open_rig(tmp_path) as rig:
        pins = Pins(frozenset({sha(rig.image)}))
        alice = rig.delegate(rig.root, "alice", small(unikernels=2), pins=pins)
        assert await rig.send(alice, "web", create(rig.image)) == CREATED

        async def unreachable(_name: Name, _command: Command) -> Payload:
            raise SecurityRefusal("cannot check quotas: couldn't reach service vmmd")

        rig.endpoint.vmmd_query = unreachable
        refused = failure(await rig.send(alice, "web", UnikernelRestart()))
    assert refused == (
        "cannot check the pins of the running image: cannot check quotas: couldn't reach"
        " service vmmd"
    )


async def test_a_pinned_delegation_does_not_restart_a_bhyve_unikernel(tmp_path: Path) -> None:
    """For bhyve, vmmd's digest field is the VM name: no image digest to check against.

    (The stand-in runs solo5 only: vmmd's answer for the bhyve unikernel is given here.)
    """
    from core.wire import Quit, Typ, UnikernelInfoList, UnikernelInfoRecord

    async with open_rig(tmp_path) as rig:
        pins = Pins(frozenset({sha(rig.image)}))
        alice = rig.delegate(rig.root, "alice", small(unikernels=2), pins=pins)
        vm = UnikernelInfoRecord(Typ.BHYVE, Quit(), frozenset({0}), 32, b"vm0")

        async def vmmd(_name: Name, _command: Command) -> Payload:
            return UnikernelInfoList(((Name(("alice",), "vm"), vm),))

        rig.endpoint.vmmd_query = vmmd
        refused = failure(await rig.send(alice, "vm", UnikernelRestart()))
    assert refused == (
        "alice:vm is a bhyve unikernel: a pinned delegation restarts only solo5 images, whose"
        " digest vmmd reports"
    )
