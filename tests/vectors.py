"""Loaders for the captured albatross 2.7.2 vectors in ``../shared/vectors``.

CI has ``../shared`` beside the checkout; so does every developer machine.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
VECTORS = SHARED / "vectors"
CASES = VECTORS / "cases"
CERTS = VECTORS / "certs"
MKFAKE = SHARED / "tools" / "mkfake.py"


@dataclass(frozen=True)
class Frame:
    """One captured frame between the real endpoint and a real daemon."""

    case: str
    sock: str
    conn: int
    idx: int
    direction: str  # "to_daemon" | "from_daemon"
    length: int
    raw: bytes  # including the 4-byte prefix

    @property
    def body(self) -> bytes:
        return self.raw[4:]

    @property
    def id(self) -> str:
        return f"{self.case}/{self.sock}{self.conn}/{self.direction}{self.idx}"


def case_dirs() -> list[Path]:
    return sorted(p for p in CASES.iterdir() if p.is_dir())


def load_case(case: str | Path) -> dict[str, Any]:
    path = case if isinstance(case, Path) else CASES / case
    data: dict[str, Any] = json.loads((path / "case.json").read_text())
    return data


def read_frames(path: Path) -> Iterator[Frame]:
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        obj = json.loads(line)
        if "hex" not in obj:
            continue
        yield Frame(
            case=obj["case"],
            sock=obj["sock"],
            conn=obj["conn"],
            idx=obj["idx"],
            direction=obj["dir"],
            length=obj["len"],
            raw=bytes.fromhex(obj["hex"]),
        )


def case_frames(case: Path, setup: bool = False) -> list[Frame]:
    name = "setup-frames.jsonl" if setup else "frames.jsonl"
    return list(read_frames(case / name))


def all_frames() -> list[Frame]:
    out: list[Frame] = []
    for case in case_dirs():
        out.extend(case_frames(case, setup=True))
        out.extend(case_frames(case))
    return out


def _recorded_time(case: Path) -> float | None:
    """When the case ran, as its capture files say: the chain re-run, else the first frame."""
    capture = case / "capture" / "capture.json"
    if capture.exists():
        connections = json.loads(capture.read_text())
        if connections:
            return float(connections[0]["t"])
    for name in ("setup-frames.jsonl", "frames.jsonl"):
        path = case / name
        for line in path.read_text().splitlines() if path.exists() else []:
            if line.strip():
                return float(json.loads(line)["t"])
    return None


@functools.cache
def captured_at(case: str | Path) -> dt.datetime:
    """The time the case was captured: the moment a test replaying it must judge its chains at.

    The captured leaves were valid for minutes, the delegations for a year from
    2026-11-27; a test that checked them against today's date would rot.  A case
    that recorded no time of its own (the client refused before connecting) ran
    right after the previous case that did: the cases ran in order.
    """
    path = case if isinstance(case, Path) else CASES / case
    for earlier in reversed([p for p in case_dirs() if p.name <= path.name]):
        recorded = _recorded_time(earlier)
        if recorded is not None:
            return dt.datetime.fromtimestamp(recorded, dt.UTC)
    raise LookupError(f"no capture time recorded at or before case {path.name}")


def capture_end() -> dt.datetime:
    """When the capture ended: every captured certificate had been issued and was valid."""
    return captured_at(case_dirs()[-1])
