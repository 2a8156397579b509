"""Errors of the daemon stand-in.

:class:`Refused` carries albatross's failure text verbatim: the shell sends
``Failure(message)`` back to the peer, so the text is part of the protocol
(vmm_vmmd.ml, vmm_resources.ml).
"""

from __future__ import annotations

from core.errors import AlbatrossError, PolicyError

__all__ = ["PolicyRefused", "Refused"]


class Refused(AlbatrossError):
    """albatrossd refuses a command; ``message`` is the failure text it replies with.

    A reply to a peer, never the end of the stand-in: no exit code of its own.
    """


class PolicyRefused(Refused, PolicyError):
    """A refusal because of a resource policy (same reply, but also a :class:`PolicyError`)."""
