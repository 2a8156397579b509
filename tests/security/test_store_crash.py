"""A real endpoint killed (SIGKILL) at each step of a state-changing request, then restarted.

Whatever the step, the leaf that was used never runs again; a leaf that was not used
yet (killed before its record) runs once after the restart.  The endpoint runs as an
inetd child: every presentation is a fresh process, i.e. a restart.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio

from core.wire import Failure, UnikernelDestroy
from tests.endpoint.fakedaemon import open_fake_daemon
from tests.endpoint.pki import Pki
from tests.security.processes import DESTROYED, Destroys, open_endpoints
from tlsendpoint.security.state.faults import FAULTS_ENV

# step -> did the command reach the daemon before the kill?
STEPS = {
    "before-record": False,
    "after-record": False,
    "before-reply": True,  # the daemon got the command and holds its reply; we kill
    "after-reply": True,
}


@pytest.mark.parametrize("step", list(STEPS))
async def test_a_leaf_used_before_a_crash_never_runs_again(tmp_path: Path, step: str) -> None:
    pki = Pki(tmp_path)
    destroy = pki.leaf("victim", UnikernelDestroy())
    daemon_side = Destroys(hold=step == "before-reply")
    async with (
        open_fake_daemon({"vmmd": daemon_side.behaviour()}) as daemon,
        open_endpoints(pki, daemon, tmp_path / "state") as endpoints,
    ):

        async def kill_when_the_daemon_has_it(process: trio.Process) -> None:
            await daemon_side.arrived.wait()
            process.send_signal(signal.SIGKILL)

        if step == "before-reply":
            reply, code = await endpoints.inetd(destroy, while_waiting=kill_when_the_daemon_has_it)
        else:
            reply, code = await endpoints.inetd(destroy, {FAULTS_ENV: f"kill@{step}"})
        assert (reply, code) == (None, -signal.SIGKILL)  # died without answering
        assert Destroys.count(daemon) == int(STEPS[step])
        daemon_side.hold = False

        reply, code = await endpoints.inetd(destroy)  # the endpoint restarted: same leaf
        assert code == 0
        if STEPS[step] or step == "after-record":
            assert isinstance(reply, Failure), reply
            assert "already executed a state-changing command" in reply.message
            assert Destroys.count(daemon) == int(STEPS[step])  # nothing more reached it
        else:  # killed before the record: the leaf was never used, it runs now, once
            assert reply == DESTROYED
            assert Destroys.count(daemon) == 1
            reply, _ = await endpoints.inetd(destroy)
            assert isinstance(reply, Failure) and "already executed" in reply.message
        fresh = pki.leaf("victim", UnikernelDestroy())
        assert (await endpoints.inetd(fresh))[0] == DESTROYED  # the state is healthy


async def test_a_bad_fault_setting_stops_the_start(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    async with (
        open_fake_daemon({"vmmd": Destroys().behaviour()}) as daemon,
        open_endpoints(pki, daemon, tmp_path / "state") as endpoints,
    ):
        reply, code = await endpoints.inetd(
            pki.leaf("x", UnikernelDestroy()), {FAULTS_ENV: "kill@sometime"}
        )
    assert (reply, code) == (None, 125)
