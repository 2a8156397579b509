"""Loaders for the captured albatross 2.7.2 vectors in ``../shared/vectors``.

CI has ``../shared`` beside the checkout; so does every developer machine.
"""

from __future__ import annotations

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
