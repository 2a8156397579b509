"""Certificate-authority toolkit compatible with albatross-client (generate, sign, delegate).

Keys, certificates, delegations, CSRs, bundles, revocation and CRLs, written as
albatross-client writes them (:mod:`ca.profiles` holds the certificate profiles,
:mod:`ca.store` the files); the ``alba ca`` commands are :mod:`ca.cli` and
:mod:`ca.cmd_revoke`, the only modules here that import click.

May import: :mod:`core` (codec, policies, the certificate extension, PEM), :mod:`durable`
(atomic files, appends) and the libraries (cryptography, click).  Never the endpoint or
the client, which build on it; the layers are stated in ``pyproject.toml``.
"""
