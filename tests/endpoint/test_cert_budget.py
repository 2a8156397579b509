"""The certificate budget: which handshakes take a share, waiting for one, giving it back;
small handshakes never wait; nothing of a finished connection outlives it (no cycles)."""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from core.errors import UsageError
from core.wire import (
    ConsoleSubscribe,
    Failure,
    StringReply,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelInfo,
    UnikernelInfoList,
    frame,
)
from tests.endpoint.fakedaemon import Conn, reply_table
from tests.endpoint.harness import Harness, open_harness, with_fake_daemon
from tests.endpoint.pki import Identity, Pki
from tests.endpoint.test_tlsstream import no_cycle_collector
from tlsendpoint.certbudget import (
    SMALL_CHAIN,
    CertificateBudget,
    FirstRecordScanner,
)
from tlsendpoint.limits import Limits
from tlsendpoint.tlscontext import connection_max_cert_list, max_cert_list
from tlsendpoint.tlsstream import TLSStream

INFO = UnikernelInfoList(())


def record(kind: int, length: int) -> bytes:
    return bytes([kind, 3, 3]) + length.to_bytes(2, "big") + bytes(length)


# -- the record scanner (pure) ----------------------------------------------------

FLIGHTS = {
    "client hello, then a full record": (record(22, 300) + record(23, 16401), 16401),
    "compatibility CCS skipped": (record(22, 517) + record(20, 1) + record(23, 80), 80),
    "second client hello after HRR": (
        record(22, 200) + record(20, 1) + record(22, 230) + record(23, 16384),
        16384,
    ),
    "no encrypted record yet": (record(22, 512) + record(20, 1), None),
    "header cut short": (record(22, 10) + bytes([23, 3, 3, 0x40]), None),
}


@pytest.mark.parametrize("case", sorted(FLIGHTS))
def test_scanner_finds_the_first_encrypted_record(case: str) -> None:
    data, expected = FLIGHTS[case]
    assert FirstRecordScanner().feed(data) == expected
    one_by_one = FirstRecordScanner()
    found = [one_by_one.feed(data[i : i + 1]) for i in range(len(data))]
    assert [f for f in found if f is not None] == ([] if expected is None else [expected])


@given(st.lists(st.integers(0, 2000), max_size=4), st.integers(0, 65535), st.data())
def test_scanner_any_split(before: list[int], length: int, data: st.DataObject) -> None:
    flight = b"".join(record(22, n) for n in before) + record(23, length) + b"trailing"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(flight)), max_size=6)))
    scanner = FirstRecordScanner()
    results = [
        scanner.feed(flight[a:b]) for a, b in zip([0, *cuts], [*cuts, len(flight)], strict=True)
    ]
    assert [r for r in results if r is not None] == [length]


# -- the budget (trio) ---------------------------------------------------------------


async def test_budget_hands_out_whole_shares_first_come_first_served() -> None:
    budget = CertificateBudget(total=10_000, share=3_000)
    assert budget.shares == 3
    owners = [object() for _ in range(5)]
    for owner in owners[:3]:
        await budget.acquire(owner)
    order: list[int] = []

    async def wait(index: int) -> None:
        await budget.acquire(owners[index])
        order.append(index)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait, 3)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(wait, 4)
        await trio.testing.wait_all_tasks_blocked()
        assert (budget.in_use, budget.waiting) == (3, 2)
        assert budget.describe() == ("3 of 3 shares of the certificate budget in use, 2 waiting")
        budget.release(owners[1])
        await trio.testing.wait_all_tasks_blocked()
        assert order == [3]
        budget.release(owners[0])
    assert order == [3, 4]


def test_budget_must_hold_one_chain_of_the_largest_size() -> None:
    with pytest.raises(UsageError, match="must hold at least one chain of the largest size"):
        CertificateBudget(total=1000, share=1001)


# -- through the endpoint --------------------------------------------------------------


def big_create(pki: Pki, size: int, cn: str = "big") -> Identity:
    return pki.leaf(cn, UnikernelCreate(UnikernelConfig(image=os.urandom(size))))


def split_records(data: bytes) -> list[bytes]:
    records, position = [], 0
    while position < len(data):
        length = int.from_bytes(data[position + 3 : position + 5], "big")
        records.append(data[position : position + 5 + length])
        position += 5 + length
    return records


async def send_all_but_finished(stream: trio.abc.Stream, ctx: ssl.SSLContext) -> None:
    """A hostile client: its whole flight except the last record (Finished), then silence."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = ctx.wrap_bio(incoming, outgoing, server_side=False)
    with contextlib.suppress(ssl.SSLWantReadError):
        client.do_handshake()
    await stream.send_all(outgoing.read())
    while True:
        incoming.write(await stream.receive_some())
        try:
            client.do_handshake()
            break
        except ssl.SSLWantReadError:
            continue
    flight = split_records(outgoing.read())
    await stream.send_all(b"".join(flight[:-1]))


class Recorded(TLSStream):
    """The endpoint's streams, kept in a list (weakly) for the test to look at."""

    made: list[weakref.ref[TLSStream]] = []  # noqa: RUF012 - reset by the fixture

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        Recorded.made.append(weakref.ref(self))


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[weakref.ref[TLSStream]]]:
    Recorded.made = []
    monkeypatch.setattr("tlsendpoint.server.TLSStream", Recorded)
    yield Recorded.made


def live(refs: list[weakref.ref[TLSStream]]) -> list[TLSStream]:
    return [s for s in (r() for r in refs) if s is not None]


async def _stall(conn: Conn) -> None:
    await conn.receive()
    await trio.sleep_forever()


def test_the_endpoint_starts_connections_at_the_small_limit(tmp_path: Path) -> None:
    from tlsendpoint.server import Endpoint
    from tlsendpoint.tlscontext import load_server_context

    pki = Pki(tmp_path)
    ctx = load_server_context(pki.ca_file, pki.cert_file, pki.key_file)
    endpoint = Endpoint(ctx, tmp_path, Limits())
    assert max_cert_list(ctx) == SMALL_CHAIN
    assert endpoint.cert_budget is not None
    assert endpoint.cert_budget.share == Limits().max_cert_list
    assert endpoint.cert_budget.shares == 4
    small = Endpoint(ctx, tmp_path, Limits(max_cert_list=50_000))
    assert small.cert_budget is None and max_cert_list(ctx) == 50_000


async def test_big_chains_take_shares_small_ones_never_wait(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    recorded: list[weakref.ref[TLSStream]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "albatross.endpoint")
    limits = Limits(max_cert_list=1 << 20, cert_budget=1 << 20)  # one share
    behaviours = {"vmmd": reply_table({UnikernelInfo: INFO, UnikernelCreate: StringReply("ok")})}
    async with with_fake_daemon(tmp_path, behaviours, limits) as (daemon, h):
        budget = h.endpoint.cert_budget
        assert budget is not None and budget.shares == 1
        # 1. a big chain that stalls before Finished takes the share
        server_side, client_side = trio.testing.memory_stream_pair()
        h.nursery.start_soon(h.endpoint.handle, server_side, "stalling-peer")
        await send_all_but_finished(client_side, h.pki.client(big_create(h.pki, 200_000)))
        await trio.testing.wait_all_tasks_blocked()
        assert (budget.in_use, budget.waiting) == (1, 0)
        (stalled,) = live(recorded)
        assert stalled.holds_budget_share
        assert connection_max_cert_list(stalled.ssl_object) == 1 << 20
        # 2. a second big chain, 10 s later, waits for it
        await trio.sleep(10)
        waiting_done = trio.Event()
        replies: list[object] = []

        async def second() -> None:
            replies.extend(m.payload for m in await h.run(big_create(h.pki, 150_000, "second")))
            waiting_done.set()

        h.nursery.start_soon(second)
        await trio.testing.wait_all_tasks_blocked()
        assert (budget.in_use, budget.waiting) == (1, 1)
        # 3. a small chain is served at once, without a share and at the small limit
        start = trio.current_time()
        client = await h.connect(h.pki.leaf("small", UnikernelInfo()))
        small = live(recorded)[-1]
        assert not small.holds_budget_share
        assert connection_max_cert_list(small.ssl_object) == SMALL_CHAIN
        assert [m.payload for m in await client.read_all()] == [INFO]
        assert trio.current_time() - start < 2
        assert not waiting_done.is_set()
        # 4. the stalled peer's deadline frees the share; the waiting one gets it
        await waiting_done.wait()
        assert trio.current_time() - start == pytest.approx(20, abs=1)
        assert replies == [StringReply("ok")]
        assert (budget.in_use, budget.waiting) == (0, 0)
    lines = [r.getMessage() for r in caplog.records if r.name == "albatross.endpoint"]
    assert any(
        "peer=stalling-peer" in line and "TLS handshake not completed within 30 s" in line
        for line in lines
    )
    assert [len(daemon.conns("vmmd"))] == [2]


async def test_a_handshake_that_waits_past_its_deadline_says_so(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "albatross.endpoint")
    limits = Limits(max_cert_list=1 << 20, cert_budget=1 << 20)
    async with with_fake_daemon(tmp_path, {"vmmd": _stall}, limits) as (daemon, h):
        budget = h.endpoint.cert_budget
        assert budget is not None
        # a served big chain holds its share until its connection closes (the daemon stalls)
        holder = trio.Event()

        async def hold() -> None:
            (reply,) = await h.run(big_create(h.pki, 200_000, "holder"))
            assert isinstance(reply.payload, Failure)  # the daemon's deadline, 120 s
            holder.set()

        h.nursery.start_soon(hold)
        await trio.testing.wait_all_tasks_blocked()
        assert daemon.conns("vmmd") and budget.in_use == 1
        server_side, client_side = trio.testing.memory_stream_pair()
        h.nursery.start_soon(h.endpoint.handle, server_side, "waiting-peer")
        with pytest.raises(trio.BrokenResourceError):
            tls = trio.SSLStream(client_side, h.pki.client(big_create(h.pki, 150_000)))
            await tls.do_handshake()
            await tls.receive_some()
        await holder.wait()
        assert budget.in_use == 0
    (line,) = [
        r.getMessage()
        for r in caplog.records
        if r.name == "albatross.endpoint" and "waiting-peer" in r.getMessage()
    ]
    assert (
        'outcome="TLS handshake not completed within 30 s (waiting for a share of the'
        " certificate budget: 1 of 1 shares of the certificate budget in use, 0 waiting)" in line
    )


async def test_a_chain_over_the_limit_is_refused_by_openssl(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "albatross.endpoint")
    limits = Limits(max_cert_list=150_000, cert_budget=150_000)
    async with open_harness(tmp_path, tmp_path, limits) as h:
        server_side, client_side = trio.testing.memory_stream_pair()
        h.nursery.start_soon(h.endpoint.handle, server_side, "too-big")
        tls = trio.SSLStream(client_side, h.pki.client(big_create(h.pki, 200_000)))
        with pytest.raises(trio.BrokenResourceError) as refused:
            await tls.do_handshake()
            await tls.receive_some()
        assert h.endpoint.cert_budget is not None
    assert "ALERT_ILLEGAL_PARAMETER" in str(refused.value.__cause__)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "albatross.endpoint"]
    assert "EXCESSIVE_MESSAGE_SIZE" in line


# -- nothing outlives its connection ------------------------------------------------


async def _play(
    h: Harness, scenario: str, identity: Identity, client_side: trio.abc.Stream
) -> None:
    """The client's part of each scenario of the test below."""
    if scenario == "silent peer":
        return
    if scenario == "left before Finished":
        await send_all_but_finished(client_side, h.pki.client(big_create(h.pki, 200_000)))
        await trio.testing.wait_all_tasks_blocked()
        return
    tls = trio.SSLStream(client_side, h.pki.client(identity))
    with contextlib.suppress(trio.BrokenResourceError):
        await tls.do_handshake()
        if scenario == "vanished":
            await tls.receive_some()
        elif scenario == "upload cut":
            await tls.send_all(frame(b"x" * 100_000)[:50_000])
            await trio.testing.wait_all_tasks_blocked()
        else:
            while await tls.receive_some():
                pass


SCENARIOS = [
    "served",
    "refused",
    "handshake refused",
    "silent peer",
    "left before Finished",
    "vanished",
    "upload cut",
    "no daemon",
    "bug",
]


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_a_finished_connection_leaves_nothing_behind(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    recorded: list[weakref.ref[TLSStream]],
    monkeypatch: pytest.MonkeyPatch,
    scenario: str,
) -> None:
    """With the cycle collector off, the TLS object (and the stream) go when the connection
    ends: before, a cycle through trio's exceptions kept a peer's chain until gc ran."""
    from tests.endpoint.test_refusals import _expired, _plain
    from tests.endpoint.test_robustness import endless_console

    if scenario == "bug":

        def broken(chain: object) -> object:
            raise RuntimeError("a bug")

        monkeypatch.setattr("tlsendpoint.server.authorize", broken)
    behaviours = {"vmmd": reply_table({UnikernelInfo: INFO}), "console": endless_console}
    tls_refs: list[weakref.ref[ssl.SSLObject]] = []
    async with with_fake_daemon(tmp_path, behaviours) as (_daemon, h):
        identity = {
            "refused": lambda: _plain("x")(h),
            "handshake refused": lambda: _expired(h),
            "vanished": lambda: h.pki.leaf("t", ConsoleSubscribe(count=1)),
            "upload cut": lambda: h.pki.leaf("u", UnikernelCreate(UnikernelConfig(image=b""))),
            "no daemon": lambda: h.pki.leaf("x", ConsoleSubscribe(count=1)),
        }.get(scenario, lambda: h.pki.leaf("x", UnikernelInfo()))()
        if scenario == "no daemon":
            (h.endpoint.socket_dir / "console.sock").unlink()
        with no_cycle_collector():
            server_side, client_side = trio.testing.memory_stream_pair()
            async with trio.open_nursery() as connection:  # ends when the endpoint is done
                connection.start_soon(h.endpoint.handle, server_side, scenario)
                await trio.testing.wait_all_tasks_blocked()
                (stream,) = live(recorded)
                tls_refs.append(weakref.ref(stream.ssl_object))
                del stream
                await _play(h, scenario, identity, client_side)
                await trio.aclose_forcefully(client_side)
            assert [ref() for ref in tls_refs] == [None]
            if scenario != "bug":  # pytest's log capture holds the traceback of the bug
                assert live(recorded) == []


def test_a_budget_smaller_than_one_chain_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tlsendpoint.cli import main

    pki = Pki(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main(
            ["--max-cert-list", "2000000", "--cert-budget", "1000000", "--tmpdir", str(tmp_path),
             str(pki.ca_file), str(pki.cert_file), str(pki.key_file)]
        )  # fmt: skip
    assert stopped.value.code == 124
    assert (
        "--cert-budget (1000000) must be at least --max-cert-list (2000000)"
        in capsys.readouterr().err
    )
