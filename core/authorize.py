"""From a verified certificate chain to an authorised request (albatross Vmm_tls.handle).

This is the endpoint's whole authorisation decision, as a pure function: it
takes the *verified* path (leaf first, as :func:`tlsendpoint.tlscontext.peer_chain`
returns it) and gives either a :class:`Request` or a :class:`Refusal` whose
reason the client is told (albatross closes silently instead; §9.6).

The rules, in albatross's order (behaviour.md §2.5, wire.md §10.4):

1. a chain of 10 or more certificates is refused;
2. the intermediates run top-down; one without the albatross extension is
   skipped (a root the client sent); one with it must carry ``policy add``
   and a CN that is a valid label; its lower-cased CN extends the path, and
   (path, policy) is collected - deepest first in the result.  Ours: each
   policy must lie within the one above it in the chain (see ``_check_nested``);
3. the leaf CN names the request: ``.``/``:`` mean the path itself; no CN
   means the path too, except for commands that need a name;
4. the leaf must carry a command from the remote allow-list
   (:data:`core.routing.ROUTES`).  Ours: a console subscription with a
   negative count is refused (it makes albatross-console loop forever, §9.5).

We add, before all that, the ocaml-x509 chain rules OpenSSL does not apply
(:mod:`core.chainrules`).  Reasons keep albatross's text first (users
grep for it) and then say which certificate and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from core import certs
from core.chainrules import chain_problems, subject_text
from core.errors import AlbatrossError, ParseError, PolicyError, UsageError
from core.routing import LEAF_ALLOWED_TEXT, command_name, route
from core.wire import (
    VERSION,
    BlockAdd,
    BlockAddOld,
    BlockDump,
    BlockDumpOld,
    BlockRemove,
    BlockSet,
    BlockSetOld,
    Command,
    ConsoleSubscribe,
    Name,
    Policy,
    PolicyAdd,
    PolicyRemove,
    check_label,
)

__all__ = ["MAX_CHAIN", "Refusal", "Request", "authorize", "common_name"]

#: albatross refuses chains of this many certificates or more.
MAX_CHAIN = 10

# albatross's texts for a leaf without a CN whose command needs a name (vmm_tls.ml cert_name)
_NEEDS_NAME: dict[type[object], str] = {
    PolicyAdd: "policy add may not have an empty name",
    PolicyRemove: "policy remove may not have an empty name",
    BlockAdd: "block add may not have an empty name",
    BlockAddOld: "old block add may not have an empty name",
    BlockRemove: "block remove may not have an empty name",
    BlockSet: "block set may not have an empty name",
    BlockSetOld: "old block set may not have an empty name",
    BlockDump: "block dump may not have an empty name",
    BlockDumpOld: "block dump may not have an empty name",
}


class Refusal(AlbatrossError):
    """The verified chain does not make an acceptable request; ``message`` says why.

    An answer to a client, never the end of a command-line tool: no exit code of its own.
    """


@dataclass(frozen=True, slots=True)
class Request:
    """What the chain asks for, and under which policies."""

    name: Name
    policies: tuple[tuple[Name, Policy], ...]  # (path-only name, policy), deepest first
    version: int
    command: Command


def common_name(cert: x509.Certificate) -> str | None:
    """The CN by ocaml-x509's rule (:func:`core.certs.common_name`); a Refusal if unparsable."""
    try:
        return certs.common_name(cert)
    except ParseError as exc:
        raise Refusal(f"certificate subject does not parse: {exc.message}") from exc


def _command(cert: x509.Certificate, role: str) -> Command | None:
    """The albatross command in *cert*, None without the extension."""
    try:
        return certs.albatross_command(cert)
    except certs.BadExtensions as exc:
        raise Refusal(
            f"{role} {subject_text(cert)}: extensions do not parse: {exc.message}"
        ) from exc
    except ParseError as exc:
        raise Refusal(
            f"couldn't parse albatross extension of {role} {subject_text(cert)}: {exc.message}"
        ) from exc


def _label(cn: str, role: str) -> str:
    try:
        return check_label(cn)
    except UsageError as exc:
        raise Refusal(f"{exc.message} in the CN of the {role}") from exc


def _policies(
    intermediates: Sequence[x509.Certificate],
) -> tuple[tuple[str, ...], list[tuple[Name, Policy]]]:
    path: tuple[str, ...] = ()
    collected: list[tuple[Name, Policy]] = []
    for cert in intermediates:  # top-down
        role = "intermediate certificate"
        command = _command(cert, role)
        if command is None:
            continue
        if not isinstance(command, PolicyAdd):
            raise Refusal(
                f"unexpected wire {command_name(command)} in {role} {subject_text(cert)}: "
                "intermediate CAs may only carry policies"
            )
        cn = common_name(cert)
        if cn is None:
            raise Refusal(
                f"policy add may not have an empty name ({role} {subject_text(cert)} has no CN)"
            )
        path = (*path, _label(cn, f"{role} {subject_text(cert)}"))
        if collected:
            _check_nested(collected[0], (Name(path, None), command.policy))
        collected.insert(0, (Name(path, None), command.policy))
    return path, collected


def _check_nested(parent: tuple[Name, Policy], child: tuple[Name, Policy]) -> None:
    """Refuse a chain whose policies do not nest, before anything reaches vmmd.

    vmmd would refuse it too, but only after inserting the deeper policy first
    (deepest-first order, not atomic): on a fresh daemon the oversized child
    policy stays and then blocks its parent's insertion for every later chain.
    """
    try:
        child[1].check_within(parent[1])
    except PolicyError as exc:
        raise Refusal(
            f"{exc.message}: the policy of {child[0]} in the certificate chain is not within"
            f" the policy of {parent[0]}"
        ) from exc


def authorize(chain: Sequence[x509.Certificate]) -> Request:
    """The request the verified *chain* (leaf first) makes; raises :class:`Refusal`."""
    if not chain:
        raise Refusal("empty chain: the client presented no certificate")
    if len(chain) >= MAX_CHAIN:
        raise Refusal(
            f"certificate chain too long: {len(chain)} certificates, at most {MAX_CHAIN - 1}"
        )
    problems = chain_problems(chain)
    if problems:
        raise Refusal("certificate not acceptable: " + "; ".join(problems))
    leaf, intermediates = chain[0], list(reversed(chain[1:]))
    path, policies = _policies(intermediates)
    cn = common_name(leaf)
    if cn is None:
        command = _command(leaf, "leaf certificate")
        if command is not None and type(command) in _NEEDS_NAME:
            raise Refusal(_NEEDS_NAME[type(command)] + " (the leaf certificate has no CN)")
        name = Name(path, None)
    elif cn in (".", ":"):
        name = Name(path, None)
    else:
        name = Name(path, _label(cn, "leaf certificate"))
    command = _command(leaf, "leaf certificate")
    if command is None:
        raise Refusal("leaf certificate does not contain an albatross extension")
    if not route(command).leaf_allowed:
        raise Refusal(
            f"unexpected command: {command_name(command)} is not accepted from a leaf "
            f"certificate; allowed are {LEAF_ALLOWED_TEXT}"
        )
    if isinstance(command, ConsoleSubscribe) and command.count is not None and command.count < 0:
        # behaviour.md §9.5: on a full ring albatross-console loops forever and grows without bound
        raise Refusal(
            f"console subscribe with a negative count ({command.count}) is refused:"
            " ask for 0 or more lines, or for lines since a time"
        )
    return Request(name=name, policies=tuple(policies), version=VERSION, command=command)
