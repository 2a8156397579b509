"""albatross 2.7 wire protocol (version 5): pure values and codecs, no I/O.

Everything a peer of albatross needs: framing, the wire messages and their
DER grammar, names, policies, the certificate extension and zlib helpers.
Decoders of untrusted bytes raise only :class:`core.errors.ParseError`.
"""

from __future__ import annotations

from core.wire.framing import (
    DEFAULT_MAX_FRAME,
    END,
    End,
    FrameDecoder,
    end_marker,
    frame,
    frame_prefix,
)
from core.wire.grammar import (
    decode_extension,
    decode_message,
    encode_extension,
    encode_message,
)
from core.wire.messages import *  # noqa: F403  (the typed values are the API)
from core.wire.messages import __all__ as _messages_all
from core.wire.names import ROOT, Name, check_label, is_valid_label
from core.wire.policy import Policy

#: OID of the albatross certificate extension (always non-critical).
EXTENSION_OID = "1.3.6.1.4.1.49836.42"

__all__ = [
    "DEFAULT_MAX_FRAME",
    "END",
    "EXTENSION_OID",
    "ROOT",
    "End",
    "FrameDecoder",
    "Name",
    "Policy",
    "check_label",
    "decode_extension",
    "decode_message",
    "encode_extension",
    "encode_message",
    "end_marker",
    "frame",
    "frame_prefix",
    "is_valid_label",
    *_messages_all,
]
