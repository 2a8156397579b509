"""The real endpoint (with its security rules) in front of the daemon stand-in, for attack tests.

Connections go through :meth:`Endpoint.handle` over an in-memory stream with real
TLS, so every check runs exactly as it does for a TCP client.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from core.wire import (
    Command,
    Failure,
    Message,
    Payload,
    Policy,
    UnikernelConfig,
    UnikernelCreate,
)
from standin.testing import Standin, open_standin
from tests.endpoint.harness import Harness
from tests.endpoint.pki import Identity, Pki, custom_cert
from tests.security.pki import Ca
from tests.standin.helpers import make_image
from tlsendpoint.limits import Limits
from tlsendpoint.security.process import Security, SecurityOptions
from tlsendpoint.server import Endpoint
from tlsendpoint.tlscontext import load_server_context

__all__ = ["Rig", "failure", "now", "open_rig", "small"]


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def small(unikernels: int = 1, memory: int = 64, block: int | None = None) -> Policy:
    """A delegation policy on CPU 0 without bridges."""
    return Policy(unikernels, frozenset({0}), memory, block, frozenset())


@dataclass
class Rig:
    tmp: Path
    pki: Pki
    root: Ca
    standin: Standin
    security: Security
    harness: Harness
    image: bytes

    @property
    def endpoint(self) -> Endpoint:
        return self.harness.endpoint

    def delegate(self, parent: Ca, cn: str, policy: Policy, **kwargs: object) -> Ca:
        return parent.delegate(cn, policy, now=now(), **kwargs)  # type: ignore[arg-type]

    def identity(self, ca: Ca, cn: str | None, command: Command, **kwargs: object) -> Identity:
        """A fresh leaf (as alba and albatross-client mint one per command)."""
        kwargs.setdefault("not_before", now() - dt.timedelta(seconds=5))
        cert, key = custom_cert((ca.cert, ca.key), cn, command=command, **kwargs)  # type: ignore[arg-type]
        return Identity([cert, *ca.chain], key)

    def create(self, memory: int = 32, force: bool = False) -> UnikernelCreate:
        config = UnikernelConfig(image=self.image, memory=memory, cpuids=frozenset({0}))
        return UnikernelCreate(config, force=force)

    async def present(self, identity: Identity) -> list[Message]:
        """Every message the endpoint sends for *identity*'s request."""
        return await self.harness.run(identity)

    async def send(self, ca: Ca, cn: str | None, command: Command) -> Payload:
        """The final reply to a fresh leaf under *ca*."""
        messages = await self.present(self.identity(ca, cn, command))
        assert messages, "the endpoint closed without a reply"
        return messages[-1].payload

    async def restart(self) -> None:
        """A new endpoint process: the security state is read again from its files."""
        options = self.security.options
        self.security.close()
        self.security = Security(options)
        ctx = load_server_context(self.pki.ca_file, self.pki.cert_file, self.pki.key_file)
        endpoint = Endpoint(ctx, self.standin.tmpdir / "util", Limits(), security=self.security)
        self.harness = Harness(self.pki, endpoint, self.harness.nursery)


def failure(payload: Payload) -> str:
    assert isinstance(payload, Failure), payload
    return payload.message


_IMAGE: dict[str, bytes] = {}


@asynccontextmanager
async def open_rig(
    tmp_path: Path,
    *,
    crl_dir: Path | None = None,
    audit_log: Path | None = None,
    memory: int = 4096,
    bridges: tuple[str, ...] = (),
    shared: bool = False,
) -> AsyncIterator[Rig]:
    """The endpoint in front of a stand-in host with CPUs 0 and 1, *memory* and *bridges*.

    *shared*: as with several endpoint processes (the host-wide quota lock is used).
    """
    if "hvt" not in _IMAGE:
        _IMAGE["hvt"] = make_image(tmp_path, "hello")
    pki = Pki(tmp_path)
    root = Ca(pki.root, pki.root_key)
    options = SecurityOptions(tmp_path / "sec", pki.root, crl_dir, audit_log, shared=shared)
    security = Security(options)
    ctx = load_server_context(pki.ca_file, pki.cert_file, pki.key_file)
    async with open_standin(tmp_path, memory=memory, bridges=bridges) as standin:
        endpoint = Endpoint(ctx, standin.tmpdir / "util", Limits(), security=security)
        async with trio.open_nursery() as nursery:
            rig = Rig(tmp_path, pki, root, standin, security, Harness(pki, endpoint, nursery),
                      _IMAGE["hvt"])  # fmt: skip
            try:
                yield rig
            finally:
                nursery.cancel_scope.cancel()
    rig.security.close()
