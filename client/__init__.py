"""alba: an albatross-client compatible command-line client (remote, local and CSR modes)."""

from __future__ import annotations

__all__: list[str] = []
