"""``python -m standin`` = ``albatross-standin``."""

from __future__ import annotations

from standin.cli import main

main()
