"""Fixtures shared by the client's end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.stack import Stack, running_stack
from tests.client.test_e2e import run
from tests.client.test_update import builder  # noqa: F401  (a fixture for every module)


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    monkeypatch.setenv("ALBATROSS_REMOTES", str(tmp_path / "config" / "remotes.toml"))
    op = tmp_path / "op"
    op.mkdir()
    monkeypatch.chdir(op)
    generated = run(["generate", "ca", "db", "--server-ip", "127.0.0.1"])
    assert generated.exit_code == 0, generated.output
    with running_stack(tmp_path, op / "cacert.pem", op / "server.pem", op / "server.key") as s:
        yield s
