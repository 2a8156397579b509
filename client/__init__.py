"""alba: an albatross-client compatible command-line client (remote, local and CSR modes).

The top of the layers: :mod:`client.cli` is the ``alba`` group, ``cmd_*`` its
subcommands, :mod:`client.run` builds the leaf or frame and :mod:`client.session` relays
the replies; :mod:`client.audit_cli` and :mod:`client.inspect_cli` are the operators'
``albatross-audit``/``-explain`` and ``albatross-inspect``.  May import every other
package of ours but :mod:`standin` (the layers are stated in ``pyproject.toml``).
"""

from __future__ import annotations

__all__: list[str] = []
