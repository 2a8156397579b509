"""One inspector: a serial reads as albatross's certificate database writes it."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ca.cli import ca_group
from ca.provision import generate
from client.inspect_cli import main as albatross_inspect
from core.clock import fixed_clock

NOW = dt.datetime(2030, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize("attempt", range(4))  # random serials: both with and without 00
def test_serial_is_the_database_hex_in_every_inspector(tmp_path: Path, attempt: int) -> None:
    _, server = generate(tmp_path, f"ca{attempt}", tmp_path / "db", NOW)
    serial_hex, cn = (tmp_path / "db").read_text().split()
    assert cn == "server"
    path = str(tmp_path / "server.pem")
    runner = CliRunner()
    words = runner.invoke(ca_group, ["inspect", path], obj=fixed_clock(NOW)).stdout
    assert words.splitlines()[:2] == [
        f"certificate: server /CN=server, issued by /CN=ca{attempt}",
        f"  serial {serial_hex}, ed25519 key, signed with ed25519",
    ]
    assert runner.invoke(albatross_inspect, [path], obj=fixed_clock(NOW)).stdout == words
    for program, args in (
        (ca_group, ["inspect", "--json", path]),
        (albatross_inspect, ["--json", path]),
    ):
        (record,) = [json.loads(line) for line in runner.invoke(program, args).stdout.splitlines()]
        (obj,) = record["objects"]
        assert (obj["serial"], obj["subject"], obj["issuer"]) == (
            serial_hex,
            "/CN=server",
            f"/CN=ca{attempt}",
        )
    assert int(serial_hex, 16) == server.serial_number
