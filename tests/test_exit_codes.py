"""Each CLI's one exit-code function, driven by the error classes (README tables per CLI)."""

from __future__ import annotations

import pytest

from ca.errors import StoreError as CaStoreError
from client.audit_cli import audit_exit_code
from client.cli import alba_exit_code
from client.errors import (
    ChainFailure,
    CliFailed,
    CommunicationFailed,
    ConnectFailed,
    HttpFailed,
    InternalError,
    LocalAuthenticationFailed,
    RemoteAuthenticationFailed,
    RemoteCommandFailed,
)
from client.inspect_cli import inspect_exit_code
from core.authorize import Refusal
from core.certs import BadExtensions
from core.errors import (
    AlbatrossError,
    FileError,
    ParseError,
    PolicyError,
    UsageError,
    exit_code,
)
from durable.database import StoreError as SecurityStoreError
from standin.persist import StandinError
from tlsendpoint.activation import ActivationError
from tlsendpoint.errors import SetupError
from tlsendpoint.security.rules.auditformat import AuditError
from tlsendpoint.security.setup import SecuritySetupError
from tlsendpoint.security.state.auditlog import AuditDamaged
from tlsendpoint.tlscontext import TLSSetupError

# error: its exit code in alba (and the CA commands in it), albatross-inspect, albatross-audit
# and albatross-explain (README: the table of each CLI).
TABLE: list[tuple[AlbatrossError, int, int, int]] = [
    (AlbatrossError("unclassified"), 125, 2, 2),
    (ParseError("bad bytes"), 124, 2, 2),
    (BadExtensions("extensions"), 124, 2, 2),
    (UsageError("bad request"), 124, 2, 2),
    (FileError("x does not exist", "No such file or directory"), 124, 2, 2),
    (PolicyError("too big"), 124, 2, 2),
    (CaStoreError("refusing to overwrite x"), 124, 2, 2),
    (ChainFailure("chain"), 116, 2, 2),
    (RemoteCommandFailed("failed"), 117, 2, 2),
    (HttpFailed("http"), 118, 2, 2),
    (LocalAuthenticationFailed("local"), 119, 2, 2),
    (RemoteAuthenticationFailed("remote"), 120, 2, 2),
    (CommunicationFailed("comm"), 121, 2, 2),
    (ConnectFailed("connect"), 122, 2, 2),
    (CliFailed("cli"), 124, 2, 2),
    (InternalError("internal"), 125, 2, 2),
    (SecurityStoreError("store"), 125, 2, 2),
    (AuditError("audit"), 1, 2, 1),
    (AuditDamaged("damaged"), 1, 2, 1),
    (Refusal("refused"), 125, 2, 2),
]


@pytest.mark.parametrize(("error", "alba", "inspect", "audit"), TABLE, ids=lambda v: repr(v))
def test_exit_code_per_cli(error: AlbatrossError, alba: int, inspect: int, audit: int) -> None:
    assert (alba_exit_code(error), inspect_exit_code(error), audit_exit_code(error)) == (
        alba,
        inspect,
        audit,
    )


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (SetupError("x"), 125),
        (TLSSetupError("x"), 125),
        (ActivationError("x"), 125),
        (SecuritySetupError("x"), 125),
        (UsageError("x"), 124),
    ],
)
def test_the_endpoint_exits_125_when_it_cannot_start(error: AlbatrossError, code: int) -> None:
    # albatross-tls-endpoint follows albatross's conventions, which the classes carry
    assert exit_code(error) == code


def test_the_stand_in_exits_1_when_it_cannot_start() -> None:
    assert exit_code(StandinError("socket in use")) == 1


def test_a_cli_table_wins_by_the_nearest_class() -> None:
    codes = {UsageError: 7, AlbatrossError: 9}
    assert exit_code(FileError("f", "r"), codes) == 7  # FileError -> UsageError
    assert exit_code(ParseError("p"), codes) == 9
    assert exit_code(ParseError("p")) == 124  # no table: the class's own code
