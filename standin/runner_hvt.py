"""A runner that starts the real ``solo5-hvt`` tender (where it is installed).

The command line is albatrossd's (vmm_unix.ml ``exec``)::

    solo5-hvt --mem=MB --net:DEV=TAP --net-mac:DEV=MAC --block:DEV=FILE ... IMAGE ARGS...

The image is written to ``<workdir>/<name>.img`` (mode 0600) first and removed
after the exit; the tender's stdout and stderr become the console.  The taps
are NOT created: on a real host albatrossd creates them as root, the stand-in
does not, so networked unikernels need taps named ``vmmtapN`` to exist
already (or the tender fails and the exit shows on the console).  Destroy
sends SIGTERM, as albatrossd does.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
from pathlib import Path

import trio

from core.errors import UsageError
from standin.runner import LaunchSpec, Output, ProcessExit

__all__ = ["Solo5HvtRunner", "find_tender", "tender_command"]

log = logging.getLogger("standin")

#: Bound on one read of the tender's output.
_READ = 4096


def find_tender(tender: str = "solo5-hvt") -> str:
    """The tender's path, or :class:`UsageError` saying where we looked."""
    found = shutil.which(tender)
    if found is None:
        raise UsageError(f"tender does not exist, looked for {tender} (install solo5 or use PATH)")
    return found


def _mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def tender_command(tender: str, spec: LaunchSpec, image_path: Path) -> list[str]:
    cmd = [tender, f"--mem={spec.config.memory}"]
    for device, tap, mac in spec.nets:
        cmd += [f"--net:{device}={tap}", f"--net-mac:{device}={_mac_text(mac)}"]
    for device, path in spec.block_files:
        cmd.append(f"--block:{device}={path}")
    return [*cmd, os.fspath(image_path), *spec.arguments]


class _TenderProcess:
    def __init__(self, process: trio.Process, image_path: Path) -> None:
        self._process = process
        self._image_path = image_path
        self.pid = process.pid
        self._done = trio.Event()
        self._exit = ProcessExit(signal=signal.SIGTERM)

    def terminate(self) -> None:
        if self._process.returncode is None:
            self._process.terminate()

    async def wait(self) -> ProcessExit:
        await self._done.wait()
        return self._exit

    async def run(self, output: Output) -> None:
        try:
            stdout = self._process.stdout
            assert stdout is not None
            while data := await stdout.receive_some(_READ):
                output(bytes(data))
            code = await self._process.wait()
            self._exit = ProcessExit(code=code) if code >= 0 else ProcessExit(signal=-code)
        finally:
            if self._process.returncode is None:
                self._process.kill()
                with trio.CancelScope(shield=True):
                    await self._process.wait()
            self._image_path.unlink(missing_ok=True)
            self._done.set()


class Solo5HvtRunner:
    """Runs each unikernel under ``solo5-hvt`` in *workdir*."""

    def __init__(self, workdir: Path, tender: str = "solo5-hvt") -> None:
        self.tender = find_tender(tender)
        self.workdir = workdir

    async def start(
        self, spec: LaunchSpec, output: Output, nursery: trio.Nursery
    ) -> _TenderProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        image_path = self.workdir / f"{spec.name}.img"
        fd = os.open(image_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, spec.image)
        finally:
            os.close(fd)
        cmd = tender_command(self.tender, spec, image_path)
        log.info("exec %s", " ".join(cmd))
        process = await trio.lowlevel.open_process(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        handle = _TenderProcess(process, image_path)
        nursery.start_soon(handle.run, output)
        return handle
