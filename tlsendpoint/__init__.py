"""The TLS endpoint: albatross's remote entry point, validated, bounded and audited.

Start reading at :mod:`tlsendpoint.server` (accept, handshake, one command per
connection), then :mod:`tlsendpoint.session` (the command's way to the daemon and back)
and :mod:`tlsendpoint.security` (the checks albatross does not make).  The command line
is :mod:`tlsendpoint.cli`.

May import: :mod:`core`, :mod:`durable`, :mod:`transport`, :mod:`ca` (the certificate
profiles the explain verdict shares) and the libraries (trio, cryptography, pyOpenSSL,
click in the CLI and the security options).  Never :mod:`client` or :mod:`standin`;
the layers are stated in ``pyproject.toml``.
"""
