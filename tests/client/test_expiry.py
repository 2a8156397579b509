"""Expiry before it bites: the client's warning (once per command, on stderr), the
expiry in ``alba remote list`` and in ``alba tree``, on fixed clocks either side of
the 14-day boundary."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ca import profiles
from client.cli import alba
from client.expiry import Expiry, delegation_paths, expiring, warning_text
from core.clock import fixed_clock
from core.wire import (
    BlockDeviceList,
    BlockInfo,
    Name,
    Policy,
    PolicyInfo,
    PolicyList,
    UnikernelInfo,
    UnikernelInfoList,
)
from tests.client.helpers import Pki, Seen, fake_endpoint, key_pem, pem, reply

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
END = T0 + dt.timedelta(days=30)
EVE = Policy(1, frozenset({0}), 32, None, frozenset())


@pytest.fixture
def pki(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Pki:
    monkeypatch.setenv("ALBATROSS_REMOTES", str(tmp_path / "cfg" / "remotes.toml"))
    pki = Pki(tmp_path, now=T0)
    key = profiles.generate_key()
    eve = profiles.intermediate(
        pki.root_cert, pki.root_key, key.public_key(), "eve", EVE, T0, not_after=END
    )
    (tmp_path / "eve.pem").write_bytes(pem(eve))
    (tmp_path / "eve.key").write_bytes(key_pem(key))
    return pki


def run(args: list[str], now: dt.datetime) -> Result:
    return CliRunner().invoke(alba, args, prog_name="alba", obj=fixed_clock(now))


def _responder(seen: Seen) -> list[bytes]:
    if isinstance(seen.command, PolicyInfo):
        return [reply(Name(("eve",), None), PolicyList(((Name(), EVE),)))]
    if isinstance(seen.command, UnikernelInfo):
        return [reply(Name(("eve",), None), UnikernelInfoList(()))]
    assert isinstance(seen.command, BlockInfo)
    return [reply(Name(("eve",), None), BlockDeviceList(()))]


WARNING = (
    "alba: warning: the certificate eve of your chain expires on 2030-01-31 00:00 UTC "
    "(in 13 days): renew it before then\n"
)


@pytest.mark.parametrize(
    ("now", "warned"),
    [
        (END - dt.timedelta(days=15), False),
        (END - dt.timedelta(days=14), False),  # exactly 14 days left
        (END - dt.timedelta(days=14) + dt.timedelta(seconds=1), True),
    ],
)
def test_warns_once_per_command_inside_14_days(pki: Pki, now: dt.datetime, warned: bool) -> None:
    with fake_endpoint(pki, _responder, now=now) as (port, seen):
        info = run(["info", *pki.remote_args(port, "eve")], now)
        tree = run(["tree", *pki.remote_args(port, "eve")], now)
    assert info.exit_code == 0, info.output
    assert info.stderr == (WARNING if warned else "")
    assert tree.exit_code == 0, tree.output
    assert len(seen) == 4  # info, then tree's three requests: still one warning
    assert tree.stderr == (WARNING if warned else "")
    marker = "  !EXPIRES" if warned else ""
    assert tree.stdout == (
        "eve:  policy: 1 unikernels 0 CPUids 32 MB memory no block"
        f"  expires 2030-01-31 00:00 UTC{marker}\n"
        "  used 0/1 unikernels, 0/32 MB memory, 0/none MB block; "
        "free 1 unikernels, 32 MB memory\n"
    )


def test_remote_list_shows_each_remotes_expiry(pki: Pki, tmp_path: Path) -> None:
    for name, ca in (("home", "cacert.pem"), ("eve", "eve.pem")):
        added = run(["remote", "add", name, "-d", "h:1", "--ca", pki.path(ca), "--ca-key",
                     pki.path("ca.key"), "--server-ca", pki.path("cacert.pem")], T0)  # fmt: skip
        assert added.exit_code == 0, added.output
    (tmp_path / "gone.pem").write_bytes(b"")
    gone = str(tmp_path / "gone.pem")
    broken = run(["remote", "add", "gone", "-d", "h:1", "--ca", gone, "--ca-key",
                  pki.path("ca.key"), "--server-ca", pki.path("cacert.pem")], T0)  # fmt: skip
    assert broken.exit_code == 0
    root_end = pki.root_cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M UTC")
    early = run(["remote", "list"], END - dt.timedelta(days=20))
    lines = early.stdout.splitlines()
    assert lines[0] == "eve: h:1, expires 2030-01-31 00:00 UTC (eve)"
    assert lines[1].startswith("gone: h:1, chain unreadable: ")
    assert lines[2] == f"home: h:1, expires {root_end} (ca)"
    late = run(["remote", "list"], END - dt.timedelta(days=3))
    assert late.stdout.splitlines()[0] == (
        "eve: h:1, expires 2030-01-31 00:00 UTC (eve) !EXPIRES in 3 days"
    )
    after = run(["remote", "list", "--json"], END + dt.timedelta(days=1))
    data = {r["name"]: r for r in map(json.loads, after.stdout.splitlines())}
    assert data["eve"]["expires"] == {"cn": "eve", "not_after": "2030-01-31T00:00:00+00:00"}
    assert data["eve"]["expires_soon"] is True and data["home"]["expires_soon"] is False
    assert "error" in data["gone"]["expires"]
    expired = run(["remote", "list"], END + dt.timedelta(days=1))
    assert expired.stdout.splitlines()[0] == "eve: h:1, EXPIRED on 2030-01-31 00:00 UTC (eve)"


def test_pure_expiry_texts_and_paths(pki: Pki, tmp_path: Path) -> None:
    from core.pemfiles import load_certificates

    chain = load_certificates(tmp_path / "eve.pem", "eve")
    assert expiring(chain, END - dt.timedelta(days=14)) == []
    assert expiring(chain, END - dt.timedelta(days=13)) == [Expiry("eve", END)]
    assert delegation_paths([*chain, pki.root_cert]) == {("eve",): Expiry("eve", END)}
    assert warning_text("alba", Expiry("eve", END), END + dt.timedelta(hours=1)) == (
        "alba: warning: the certificate eve of your chain expired on 2030-01-31 00:00 UTC: "
        "ask for a new delegation\n"
    )
    assert "(in less than a day)" in warning_text(
        "alba", Expiry("eve", END), END - dt.timedelta(hours=1)
    )
    assert "(in 1 day)" in warning_text("alba", Expiry("eve", END), END - dt.timedelta(days=1))
