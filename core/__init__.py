"""The protocol core: albatross 2.7 as values, with no I/O.

The wire codec (:mod:`core.wire`: framing, DER grammar, messages, names, policies, the
certificate extension), the routing table (:mod:`core.routing`), the certificate chain
rules (:mod:`core.chainrules`), the request authorisation (:mod:`core.authorize`), the
certificate fields albatross reads (:mod:`core.certs`), key types (:mod:`core.keys`),
PEM/DER parsing (:mod:`core.pem`) and the one bounded reader of certificate and key
files (:mod:`core.pemfiles`), OCaml's Format line breaking (:mod:`core.ocaml_format`),
the Solo5 manifest reader (:mod:`core.solo5`), one error hierarchy (:mod:`core.errors`)
and the clock type (:mod:`core.clock`).

Pure: bytes and values in, values or :class:`core.errors.AlbatrossError` out.  No trio,
no sockets, no click, no clock reads (the time is a parameter); a file is read only by a
function whose job is to read one.  Imports nothing of ours: every other package builds
on this one (the layers are stated in ``pyproject.toml`` and checked by import-linter).
"""
