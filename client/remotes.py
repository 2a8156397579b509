"""Named remotes in ``~/.config/albatross/remotes.toml`` (read with tomllib, written with tomli-w).

A remote holds what a user would otherwise type on every command::

    [remotes.friend]
    destination = "host.example:1025"
    ca = "/home/me/.config/albatross/friend/chain.pem"     # our CA first, then its chain
    ca_key = "/home/me/.config/albatross/friend/key.pem"
    server_ca = "/home/me/.config/albatross/friend/server-ca.pem"
    server_name = "host.example"                             # optional: checked against the SAN
    key_type = "ed25519"                                     # optional

Remote groups (for fleets, :mod:`client.fleet`) are a table of lists of remote names,
kept when alba rewrites the file::

    [groups]
    web = ["friend", "home"]

The file is written by ``alba remote add/import/remove`` with mode 0600.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

import tomli_w

from client.errors import CliFailed
from durable.files import write_file

__all__ = ["RemoteEntry", "config_path", "load_groups", "load_remotes", "save_remotes"]

_KEYS = ("destination", "ca", "ca_key", "server_ca", "server_name", "key_type")


@dataclass(frozen=True)
class RemoteEntry:
    destination: str
    ca: str
    ca_key: str
    server_ca: str
    server_name: str | None = None
    key_type: str | None = None


def config_path() -> Path:
    """``$ALBATROSS_REMOTES``, else ``$XDG_CONFIG_HOME/albatross/remotes.toml``."""
    explicit = os.environ.get("ALBATROSS_REMOTES")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "albatross" / "remotes.toml"


def _table(path: Path, key: str) -> dict[str, object]:
    """The ``[key]`` table of the remotes file (empty if the file or the table is missing)."""
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CliFailed(f"remotes file {path}: {exc}", log="term") from None
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise CliFailed(f"remotes file {path}: [{key}] must be a table", log="term")
    return table


def load_remotes(path: Path | None = None) -> dict[str, RemoteEntry]:
    path = path or config_path()
    table = _table(path, "remotes")
    out: dict[str, RemoteEntry] = {}
    for name, entry in table.items():
        if not isinstance(entry, dict):
            raise CliFailed(f"remotes file {path}: remote {name!r} must be a table", log="term")
        unknown = set(entry) - set(_KEYS)
        missing = {"destination", "ca", "ca_key", "server_ca"} - set(entry)
        if unknown or missing:
            problem = f"unknown keys {sorted(unknown)}" if unknown else f"missing {sorted(missing)}"
            raise CliFailed(f"remotes file {path}: remote {name!r}: {problem}", log="term")
        if not all(isinstance(v, str) for v in entry.values()):
            raise CliFailed(f"remotes file {path}: remote {name!r}: values are strings", log="term")
        out[name] = RemoteEntry(**entry)
    return out


def load_groups(path: Path | None = None) -> dict[str, tuple[str, ...]]:
    """The ``[groups]`` table of remotes.toml: group name -> remote names."""
    path = path or config_path()
    table = _table(path, "groups")
    groups: dict[str, tuple[str, ...]] = {}
    for name, members in table.items():
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise CliFailed(
                f"remotes file {path}: group {name!r} must be a list of remote names", log="term"
            )
        groups[name] = tuple(members)
    return groups


def save_remotes(remotes: dict[str, RemoteEntry], path: Path | None = None) -> Path:
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    table = {
        name: {key: value for key, value in asdict(remotes[name]).items() if value is not None}
        for name in sorted(remotes)
    }
    document: dict[str, object] = {"remotes": table}
    groups = load_groups(path)  # not ours to drop: `alba remote add` keeps the fleet groups
    if groups:
        document["groups"] = {name: list(groups[name]) for name in sorted(groups)}
    # tomli-w quotes names and escapes control characters: what we write, tomllib reads back.
    # write_file: a temporary file of its own, renamed over the old one, so two `alba remote`
    # commands at once never clobber each other's half-written file (the last one wins, whole)
    write_file(path, tomli_w.dumps(document).encode(), mode=0o600)
    return path
