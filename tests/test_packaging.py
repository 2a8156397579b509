"""What the sdist and the metadata carry: the license, the service files, the dependencies."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

from tests.vectors import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_runtime_dependencies_leave_out_the_benchmark_libraries() -> None:
    names = {d.split(">")[0].split("=")[0].strip() for d in PYPROJECT["project"]["dependencies"]}
    assert "pyasn1" not in names
    assert "tomli-w" in names
    assert "pyasn1>=0.6" in PYPROJECT["project"]["optional-dependencies"]["bench"]


def test_license_and_links() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "ISC"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Copyright (c) 2026 the albatross-gateway authors" in text
    assert "Permission to use, copy, modify, and distribute this software" in text
    assert project["urls"] == {"Upstream": "https://github.com/robur-coop/albatross"}
    assert "Typing :: Typed" in project["classifiers"]


def test_sdist_carries_the_service_files_and_the_license(tmp_path: Path) -> None:
    # --no-isolation: the build backend is the one installed here (no network needed)
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(tmp_path)],
        cwd=ROOT, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (sdist,) = tmp_path.glob("albatross_gateway-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
        pkg_info = tar.extractfile(next(n for n in tar.getnames() if n.endswith("/PKG-INFO")))
        assert pkg_info is not None
        metadata = pkg_info.read().decode()
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "inetd").rglob("*") if p.is_file()}
    assert shipped and shipped <= names
    assert "LICENSE" in names
    assert "License-Expression: ISC" in metadata
    assert "Project-URL: Upstream, https://github.com/robur-coop/albatross" in metadata
    assert 'Requires-Dist: pyasn1>=0.6; extra == "bench"' in metadata
