"""The endpoint's TLS configuration and the client's verified chain.

Why the stdlib ``ssl`` module and not pyOpenSSL (the style guide's default):
albatross-client puts the whole unikernel image, zlib-compressed, into the
leaf certificate of a ``create`` (up to 2^24 octets).  OpenSSL refuses a peer
Certificate message over ``max_cert_list`` (100 KiB by default), so an
endpoint that cannot raise that limit fails every real ``create``.  pyOpenSSL
(on cryptography's bundled OpenSSL) has no binding for ``SSL_CTX_ctrl``; the
stdlib module has no setter either, but it links the *system* libssl, whose
exported ``SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MAX_CERT_LIST, n, NULL)`` we can
call with ctypes on the ``SSL_CTX*`` of an ``ssl.SSLContext``.  (Checked again for
issue 13: pyOpenSSL 26.4's binding, on the OpenSSL 4.0.3 of cryptography's wheel, exposes
neither ``SSL_CTX_ctrl`` nor ``SSL_CTX_set_max_cert_list``, so there is still no supported
route; and a held connection costs more there: 34.6 KiB against 22.8 KiB for the stdlib's
on the system OpenSSL 3.0, ``bench/tls_memory_floor.py --pyopenssl``.)  That pointer
is the first field after the object header of CPython's ``PySSLContext``.
Because this reaches into private memory we prove every step and refuse to
start otherwise (:class:`TLSSetupError`):

* the libssl we load is the one mapped into this process by ``_ssl`` and
  reports the same ``OpenSSL_version_num()`` as ``ssl.OPENSSL_VERSION_NUMBER``;
* the pointer is the ``SSL_CTX`` the ssl module uses: ``SSL_CTX_get_verify_mode``
  and ``SSL_CTX_get_options`` read through it equal what the module reports (a
  wrong offset would read another field: NULL or different values);
* after setting, ``SSL_CTRL_GET_MAX_CERT_LIST`` reads the new value back.

A second private access: on Python 3.11 the verified chain is only available
as ``SSLObject._sslobj.get_verified_chain()`` (public from 3.13); we use the
public method when it exists.  Only the verified path counts: a certificate the
client sent that OpenSSL did not put on the path never reaches
:mod:`core.authorize`.  OpenSSL's path always ends at our CA; albatross
(ocaml-tls) includes the anchor only if the client sent it, so we drop it
otherwise (it matters only for the chain length limit).

A third: a connection's own limit.  OpenSSL copies the context's limit into
each connection (``SSL_new``); :func:`set_connection_max_cert_list` raises one
connection's (``SSL_ctrl`` on its ``SSL*``, the field after the owner
reference in CPython's ``PySSLSocket``), proven like the context pointer: the
``SSL*`` must belong to the context's ``SSL_CTX`` and be a server, and the
value is read back.  :mod:`tlsendpoint.certbudget` explains why.

The verification time: OpenSSL reads the system time itself.  A program
that is handed another clock (a test replaying certificates captured on a
known day) pins the time of a context with :func:`set_verify_time`
(``X509_VERIFY_PARAM_set_time`` on the context's parameters, read back).

TLS parameters follow albatross (spec behaviour.md §2.3): TLS 1.3 only, a
client certificate is required, no session tickets, one CA.  OpenSSL's
verification covers validity, CA flags, keyCertSign, path length, signatures
and unknown critical extensions; the rules where ocaml-x509 is stricter are
checked afterwards on the verified chain (:mod:`core.chainrules`).
"""

from __future__ import annotations

import ctypes
import datetime as dt
import re
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from core.errors import FileError, ParseError
from core.pemfiles import load_certificates
from tlsendpoint.errors import SetupError
from tlsendpoint.limits import DEFAULT_MAX_CERT_LIST

__all__ = [
    "DEFAULT_MAX_CERT_LIST",
    "TLSSetupError",
    "buffers_released",
    "connection_max_cert_list",
    "load_server_context",
    "max_cert_list",
    "peer_chain",
    "release_buffers",
    "set_connection_max_cert_list",
    "set_max_cert_list",
    "set_verify_time",
]

_SSL_CTRL_GET_MAX_CERT_LIST = 50
_SSL_CTRL_SET_MAX_CERT_LIST = 51
_SSL_CTRL_MODE = 33  # SSL_CTX_set_mode / SSL_CTX_get_mode (larg 0 reads)
_SSL_MODE_RELEASE_BUFFERS = 0x10


class TLSSetupError(SetupError):
    """The TLS configuration cannot be built; the endpoint must not start (exit 125)."""


def _libssl() -> ctypes.CDLL:
    """The libssl that ``_ssl`` is linked against, found in this process's mappings."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError as exc:
        raise TLSSetupError(f"cannot read /proc/self/maps to find libssl: {exc}") from exc
    paths = sorted(set(re.findall(r"(/\S*/libssl\.so[\w.]*)$", maps, re.MULTILINE)))
    if len(paths) != 1:
        raise TLSSetupError(
            f"expected exactly one libssl mapped by the ssl module, found {paths or 'none'}"
        )
    lib = ctypes.CDLL(paths[0])
    lib.OpenSSL_version_num.restype = ctypes.c_ulong
    lib.OpenSSL_version_num.argtypes = []
    if lib.OpenSSL_version_num() != ssl.OPENSSL_VERSION_NUMBER:
        raise TLSSetupError(
            f"{paths[0]} is OpenSSL {lib.OpenSSL_version_num():#x}, but the ssl module "
            f"was built for {ssl.OPENSSL_VERSION_NUMBER:#x}"
        )
    lib.SSL_CTX_ctrl.restype = ctypes.c_long
    lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    lib.SSL_CTX_get_verify_mode.restype = ctypes.c_int
    lib.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
    lib.SSL_CTX_get_options.restype = ctypes.c_uint64
    lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
    lib.SSL_ctrl.restype = ctypes.c_long
    lib.SSL_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    lib.SSL_get_SSL_CTX.restype = ctypes.c_void_p
    lib.SSL_get_SSL_CTX.argtypes = [ctypes.c_void_p]
    lib.SSL_is_server.restype = ctypes.c_int
    lib.SSL_is_server.argtypes = [ctypes.c_void_p]
    # libcrypto's, found through libssl's dependencies
    lib.SSL_CTX_get0_param.restype = ctypes.c_void_p
    lib.SSL_CTX_get0_param.argtypes = [ctypes.c_void_p]
    lib.X509_VERIFY_PARAM_set_time.restype = None
    lib.X509_VERIFY_PARAM_set_time.argtypes = [ctypes.c_void_p, ctypes.c_int64]
    lib.X509_VERIFY_PARAM_get_time.restype = ctypes.c_int64
    lib.X509_VERIFY_PARAM_get_time.argtypes = [ctypes.c_void_p]
    return lib


def _ssl_ctx_pointer(ctx: ssl.SSLContext, lib: ctypes.CDLL) -> int:
    """The ``SSL_CTX*`` inside *ctx*, after proving it is one."""
    pointer = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not pointer:
        raise TLSSetupError("the ssl.SSLContext holds no SSL_CTX pointer where expected")
    # SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT is what CERT_REQUIRED sets
    expected_mode = {ssl.CERT_NONE: 0, ssl.CERT_OPTIONAL: 1, ssl.CERT_REQUIRED: 3}
    if lib.SSL_CTX_get_verify_mode(pointer) != expected_mode[ctx.verify_mode]:
        raise TLSSetupError("the SSL_CTX found in ssl.SSLContext does not match it (verify mode)")
    if lib.SSL_CTX_get_options(pointer) != int(ctx.options):
        raise TLSSetupError("the SSL_CTX found in ssl.SSLContext does not match it (options)")
    return int(pointer)


def max_cert_list(ctx: ssl.SSLContext) -> int:
    """The peer certificate chain limit OpenSSL applies for *ctx*, in octets."""
    lib = _libssl()
    return int(lib.SSL_CTX_ctrl(_ssl_ctx_pointer(ctx, lib), _SSL_CTRL_GET_MAX_CERT_LIST, 0, None))


def set_max_cert_list(ctx: ssl.SSLContext, limit: int) -> None:
    """Raise OpenSSL's peer certificate chain limit of *ctx*; verify it took effect."""
    if not 0 < limit < 2**31:
        raise TLSSetupError(f"max certificate chain size {limit} is out of range")
    lib = _libssl()
    pointer = _ssl_ctx_pointer(ctx, lib)
    lib.SSL_CTX_ctrl(pointer, _SSL_CTRL_SET_MAX_CERT_LIST, limit, None)
    got = lib.SSL_CTX_ctrl(pointer, _SSL_CTRL_GET_MAX_CERT_LIST, 0, None)
    if got != limit:
        raise TLSSetupError(f"OpenSSL kept max_cert_list at {got} instead of {limit}")


def _ssl_pointer(ssl_object: ssl.SSLObject, lib: ctypes.CDLL) -> int:
    """The ``SSL*`` of a server-side *ssl_object*, after proving it is one of its context."""
    inner = ssl_object._sslobj  # type: ignore[attr-defined]  # the C-level _ssl._SSLSocket
    # PySSLSocket: PyObject_HEAD, PyObject *Socket, SSL *ssl (Modules/_ssl.c)
    address = id(inner) + object.__basicsize__ + ctypes.sizeof(ctypes.c_void_p)
    pointer = ctypes.c_void_p.from_address(address).value
    ctx_pointer = _ssl_ctx_pointer(ssl_object.context, lib)
    if not pointer or lib.SSL_get_SSL_CTX(pointer) != ctx_pointer:
        raise TLSSetupError("the ssl.SSLObject holds no SSL of its context where expected")
    if lib.SSL_is_server(pointer) != 1:
        raise TLSSetupError("the SSL found in the ssl.SSLObject is not a server connection")
    return int(pointer)


def set_connection_max_cert_list(ssl_object: ssl.SSLObject, limit: int) -> None:
    """Set the peer certificate chain limit of one server connection; verify it took effect."""
    if not 0 < limit < 2**31:
        raise TLSSetupError(f"max certificate chain size {limit} is out of range")
    lib = _libssl()
    pointer = _ssl_pointer(ssl_object, lib)
    lib.SSL_ctrl(pointer, _SSL_CTRL_SET_MAX_CERT_LIST, limit, None)
    got = lib.SSL_ctrl(pointer, _SSL_CTRL_GET_MAX_CERT_LIST, 0, None)
    if got != limit:
        raise TLSSetupError(f"OpenSSL kept the connection's max_cert_list at {got}, not {limit}")


def connection_max_cert_list(ssl_object: ssl.SSLObject) -> int:
    """The peer certificate chain limit OpenSSL applies for one server connection."""
    lib = _libssl()
    return int(lib.SSL_ctrl(_ssl_pointer(ssl_object, lib), _SSL_CTRL_GET_MAX_CERT_LIST, 0, None))


def set_verify_time(ctx: ssl.SSLContext, when: dt.datetime) -> None:
    """Verify peer chains of *ctx* as at *when* (a fixed clock) instead of the system time."""
    lib = _libssl()
    param = lib.SSL_CTX_get0_param(_ssl_ctx_pointer(ctx, lib))
    if not param:
        raise TLSSetupError("the SSL_CTX has no verification parameters")
    seconds = int(when.timestamp())
    lib.X509_VERIFY_PARAM_set_time(param, seconds)
    if lib.X509_VERIFY_PARAM_get_time(param) != seconds:
        raise TLSSetupError("OpenSSL did not take the verification time")


def buffers_released(ctx: ssl.SSLContext) -> bool:
    """Whether connections of *ctx* free their TLS record buffers while idle."""
    lib = _libssl()
    mode = lib.SSL_CTX_ctrl(_ssl_ctx_pointer(ctx, lib), _SSL_CTRL_MODE, 0, None)
    return bool(mode & _SSL_MODE_RELEASE_BUFFERS)


def release_buffers(ctx: ssl.SSLContext) -> None:
    """Set SSL_MODE_RELEASE_BUFFERS on *ctx*; verify it took effect.

    OpenSSL then frees a connection's read and write record buffers (about
    17 KiB each) whenever they are empty, so an idle console subscriber
    costs the SSL object only.  The price is a malloc per record, which is
    noise next to the record's cryptography.  CPython's ``ssl`` sets this
    mode on every new context already (3.11); we set it again and read it
    back, so a Python that stops doing so cannot silently cost 34 KiB per
    held connection.
    """
    lib = _libssl()
    pointer = _ssl_ctx_pointer(ctx, lib)
    lib.SSL_CTX_ctrl(pointer, _SSL_CTRL_MODE, _SSL_MODE_RELEASE_BUFFERS, None)
    if not buffers_released(ctx):
        raise TLSSetupError("OpenSSL did not accept SSL_MODE_RELEASE_BUFFERS")


def _read_certs(path: Path, what: str) -> list[x509.Certificate]:
    """The certificates of *path*, read by :mod:`core.pemfiles` (the one reader, bounded)."""
    try:
        return load_certificates(path, what)
    except FileError as exc:
        raise TLSSetupError(f"cannot read {what} {path}: {exc.reason}") from None
    except ParseError as exc:
        raise TLSSetupError(exc.message) from None


def load_server_context(
    ca: Path, cert: Path, key: Path, max_chain: int = DEFAULT_MAX_CERT_LIST
) -> ssl.SSLContext:
    """TLS 1.3 server context that requires a client certificate issued under *ca*."""
    cas = _read_certs(ca, "CA file")
    if len(cas) != 1:
        # albatross: "expect single ca as cacert"
        raise TLSSetupError(f"expect single ca as cacert: {ca} holds {len(cas)} certificates")
    _read_certs(cert, "certificate file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.options |= ssl.OP_NO_TICKET
    ctx.num_tickets = 0
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as exc:
        raise TLSSetupError(
            f"cannot use certificate {cert} with key {key}: {exc}"
            " (is the key the certificate's, PEM-encoded and unencrypted?)"
        ) from exc
    ctx.load_verify_locations(cadata=cas[0].public_bytes(Encoding.PEM).decode("ascii"))
    set_max_cert_list(ctx, max_chain)
    release_buffers(ctx)
    return ctx


def _der(item: object) -> bytes:
    if isinstance(item, bytes):
        return item
    return item.public_bytes(ssl._ssl.ENCODING_DER)  # type: ignore[attr-defined,no-any-return]


def peer_chain(ssl_object: ssl.SSLObject) -> list[x509.Certificate]:
    """The client's verified chain as albatross sees it: leaf first, anchor only if sent.

    Each certificate is DER-encoded once and parsed once (a ``create`` leaf can be
    16 MiB): the "was the anchor sent" test compares OpenSSL's certificate objects
    (``X509_cmp``: cached SHA-1 fingerprints), not encodings.
    """
    if hasattr(ssl_object, "get_verified_chain"):  # Python >= 3.13
        verified = list(ssl_object.get_verified_chain())
        sent = list(ssl_object.get_unverified_chain())  # type: ignore[attr-defined]
    else:
        inner = ssl_object._sslobj  # type: ignore[attr-defined]
        verified = list(inner.get_verified_chain() or [])
        sent = list(inner.get_unverified_chain() or [])
    if not verified:
        return []
    if verified[-1] not in sent:
        verified = verified[:-1]
    return [x509.load_der_x509_certificate(_der(item)) for item in verified]
