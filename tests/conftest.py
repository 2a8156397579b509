"""Suite-wide fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _endpoint_state_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Endpoints started by tests (in-process or as subprocesses) keep their security
    state in a temporary directory, never in /var/lib/albatross-tls."""
    state = tmp_path_factory.mktemp("endpoint-state")
    mp = pytest.MonkeyPatch()
    mp.setenv("ALBATROSS_TLS_STATE_DIR", str(state))
    yield
    mp.undo()
