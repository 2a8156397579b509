"""How much client-certificate memory handshakes may make OpenSSL hold at once.

The threat: a peer opens a connection, sends a huge certificate chain (a
``create`` leaf may legitimately carry a 16 MiB image) and stalls before
Finished.  OpenSSL then holds the message buffer and the parsed chain - about
three times the chain - until the handshake deadline; 50 such peers cost
2.3 GiB, and ``--max-connections`` (256) allowed about 11 GiB.  Worse, the
buffer costs no traffic: OpenSSL allocates and zeroes the whole length a
Certificate message *claims* as soon as it has decrypted the 4-octet message
header (``read_state_machine``: ``grow_init_buf(message_size)``), so one
record claiming 16 MiB commits 16 MiB.  The claim is encrypted (TLS 1.3), so
we cannot read it; we can only bound what OpenSSL may accept before it reads
it.  Hence two limits:

* Every connection starts with OpenSSL's own default certificate-list limit
  (:data:`SMALL_CHAIN`, 100 KiB, set on the context), which no budget
  accounts for: at most ``--max-connections`` x 100 KiB.
* A connection may raise its own limit to ``--max-cert-list`` only after
  taking a *share* of the budget (``--cert-budget`` octets, shares of
  ``--max-cert-list`` octets each).  The share is taken before OpenSSL sees the
  first encrypted record of the client's flight, kept until the connection
  closes (OpenSSL keeps the chain for the connection's life), and waited for
  in FIFO order, bounded by the handshake deadline.

Which connections ask for a share is decided from the record layer, which is
in clear: the client's Certificate message is the first message of its
encrypted flight (RFC 8446 §4.4), so it starts the first application-data
record.  A client whose chain is larger than one record fills that first
record to the maximum plaintext (2^14 octets) - every TLS implementation
fragments a long message into full records - so a first encrypted record
shorter than :data:`FULL_RECORD` means the Certificate message fits in it
and the 100 KiB limit is plenty.  A peer that claims a big message in a short
record is refused by OpenSSL (``excessive message size``, with its alert); a
peer that sends a long first record takes a share like an honest big chain.
The one honest client this refuses is one that negotiated a
max_fragment_length below 2^14 *and* sends a chain over 100 KiB, which a
default OpenSSL server refuses too.

No library exposes this point of the handshake (the record stream before
OpenSSL reads it), so the record-header scan below is ours: five octets per
record (RFC 8446 §5.1), until the first application-data record.
"""

from __future__ import annotations

import trio

from core.errors import UsageError

__all__ = [
    "APPLICATION_DATA",
    "FULL_RECORD",
    "SMALL_CHAIN",
    "CertificateBudget",
    "FirstRecordScanner",
]

#: OpenSSL's default certificate-list limit: what a connection gets without a share.
SMALL_CHAIN = 100 * 1024
#: TLS record content type of encrypted records (RFC 8446 §5.2: opaque_type).
APPLICATION_DATA = 23
#: An encrypted record at least this long may start a chain longer than one record:
#: 2^14 octets of plaintext, before the content-type octet and the AEAD tag.
FULL_RECORD = 1 << 14
_HEADER = 5  # content type, legacy version (2), length (2)


class FirstRecordScanner:
    """Finds the length of the first application-data record in the client's byte stream.

    Pure: feed it the octets in arrival order; :meth:`feed` returns that length
    once its header has been seen, None before.  Records before it
    (ClientHello, a second ClientHello after HelloRetryRequest, the
    compatibility ChangeCipherSpec) are skipped by their length.
    """

    def __init__(self) -> None:
        self._header = bytearray()
        self._skip = 0  # octets of the current record's body still to pass over

    def feed(self, data: bytes | bytearray) -> int | None:
        position, size = 0, len(data)
        while position < size:
            if self._skip:
                step = min(self._skip, size - position)
                self._skip -= step
                position += step
                continue
            if not self._header and size - position >= _HEADER:  # the usual case: a whole header
                header = data[position : position + _HEADER]
                position += _HEADER
            else:
                take = min(_HEADER - len(self._header), size - position)
                self._header += data[position : position + take]
                position += take
                if len(self._header) < _HEADER:
                    return None
                header, self._header = bytes(self._header), bytearray()
            length = int.from_bytes(header[3:5], "big")
            if header[0] == APPLICATION_DATA:
                return length
            self._skip = length
        return None


class CertificateBudget:
    """Shares of ``share`` octets out of ``total``, handed out first come, first served."""

    def __init__(self, total: int, share: int) -> None:
        if share > total:
            raise UsageError(
                f"the certificate budget ({total} octets, --cert-budget) must hold at least one "
                f"chain of the largest size accepted ({share} octets, --max-cert-list)"
            )
        self.total = total
        self.share = share
        self.shares = total // share
        self._limiter = trio.CapacityLimiter(self.shares)

    async def acquire(self, owner: object) -> None:
        """Take one share for *owner*; waits (FIFO) while none is free."""
        await self._limiter.acquire_on_behalf_of(owner)

    def release(self, owner: object) -> None:
        self._limiter.release_on_behalf_of(owner)

    @property
    def in_use(self) -> int:
        """Shares held now."""
        return int(self._limiter.borrowed_tokens)

    @property
    def waiting(self) -> int:
        """Connections waiting for a share."""
        return self._limiter.statistics().tasks_waiting

    def describe(self) -> str:
        return (
            f"{self.in_use} of {self.shares} shares of the certificate budget in use, "
            f"{self.waiting} waiting"
        )
