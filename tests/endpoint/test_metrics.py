"""``--metrics``: real scrapes over HTTP after real commands through the endpoint and the stand-in.

The endpoint runs in front of the daemon stand-in (tests/security/rig.py) with its
security rules; its metrics are served by the same HTTP server the CLI starts, on
127.0.0.1 port 0, and read back with prometheus-client's own parser.
"""

from __future__ import annotations

import contextlib
import shutil
import ssl
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from core.authorize import Refusal
from core.wire import (
    ConsoleSubscribe,
    Name,
    StringReply,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelInfo,
    UnikernelInfoList,
)
from durable.database import StoreError, StoreUnwritable
from tests.endpoint.pki import Pki
from tests.security.rig import Rig, failure, open_rig, small
from tlsendpoint.metrics import (
    CODES,
    EndpointMetrics,
    Observation,
    handshake_reason,
    refusal_code,
)
from tlsendpoint.metricsserver import MetricsPlan, open_metrics
from tlsendpoint.security import SecurityRefusal
from tlsendpoint.security.rules.auditformat import AuditError
from tlsendpoint.security.rules.naming import NameRefusal
from tlsendpoint.security.rules.pins import PinRefusal
from tlsendpoint.security.rules.quota import QuotaError
from tlsendpoint.security.rules.replay import ReplayRefusal
from tlsendpoint.security.rules.revocation import RevocationError, RevocationRefusal
from tlsendpoint.security.rules.rollback import RollbackRefusal
from tlsendpoint.session import RequestFailed, UploadFailed
from transport.framed import PeerClosed

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(plan: MetricsPlan) -> str:
    """One GET of /metrics over a real socket (blocking: call it in a thread)."""
    host, port = plan.address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=30) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        text: str = reply.read().decode()
        return text


def samples(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


@asynccontextmanager
async def served(
    rig: Rig, max_paths: int = 64
) -> AsyncIterator[tuple[MetricsPlan, EndpointMetrics]]:
    """The rig's endpoint with --metrics 127.0.0.1:0 (as the CLI sets it up)."""
    plan = open_metrics(("127.0.0.1", 0), max_paths, workers=1, security=True)
    metrics = plan.endpoint_metrics()
    rig.harness.endpoint.metrics = metrics
    plan.start()
    try:
        yield plan, metrics
    finally:
        plan.close()


async def read(plan: MetricsPlan) -> tuple[str, Samples]:
    text = await trio.to_thread.run_sync(scrape, plan)
    return text, samples(text)


# -- through the endpoint and the stand-in ------------------------------------------------


async def test_a_scrape_shows_commands_refusals_uploads_paths_and_usage(tmp_path: Path) -> None:
    async with (
        open_rig(tmp_path, audit_log=tmp_path / "audit.log") as rig,
        served(rig) as (
            plan,
            metrics,
        ),
    ):
        alice = rig.delegate(rig.root, "alice", small(unikernels=2, memory=128, block=10))
        assert not isinstance(await rig.send(alice, "one", rig.create(memory=32)), type(None))
        # an image uploaded after the handshake (as alba does for big images)
        upload = rig.identity(alice, "two", UnikernelCreate(UnikernelConfig(image=b"", memory=32)))
        replies = await rig.harness.run(upload, upload=[rig.image])
        assert "created" in str(replies[-1].payload)
        # refused by the quota rule: 3 unikernels against a policy of 2
        assert "maximum amount of unikernels" in failure(
            await rig.send(alice, "three", rig.create(memory=32))
        )
        # refused by the name rule: a destroy with a path-only name
        assert failure(await rig.send(alice, ".", UnikernelDestroy()))
        await metrics.refresh_usage(rig.endpoint.vmmd_query)
        text, found = await read(plan)

    assert value(found, "albatross_endpoint_requests_total", kind="unikernel_create",
                 outcome="success") == 2  # fmt: skip
    assert value(found, "albatross_endpoint_requests_total", kind="unikernel_create",
                 outcome="refused") == 1  # fmt: skip
    assert value(found, "albatross_endpoint_requests_total", kind="unikernel_destroy",
                 outcome="refused") == 1  # fmt: skip
    assert value(found, "albatross_endpoint_refusals_total", reason="quota") == 1
    assert value(found, "albatross_endpoint_refusals_total", reason="name") == 1
    assert value(found, "albatross_endpoint_refusals_total", reason="replay") == 0
    assert value(found, "albatross_endpoint_uploaded_bytes_total", kind="unikernel_create") == len(
        rig.image
    )
    assert value(found, "albatross_endpoint_request_duration_seconds_count",
                 kind="unikernel_create") == 3  # fmt: skip
    assert value(found, "albatross_endpoint_open_connections") == 0
    assert value(found, "albatross_endpoint_security_store_up") == 1
    assert value(found, "albatross_endpoint_audit_log_up") == 1
    assert value(found, "albatross_delegation_policy", path="alice", resource="memory_mb") == 128
    assert value(found, "albatross_delegation_policy", path="alice", resource="unikernels") == 2
    assert value(found, "albatross_delegation_policy", path="alice", resource="block_mb") == 10
    assert value(found, "albatross_delegation_usage", path="alice", resource="unikernels") == 2
    assert value(found, "albatross_delegation_usage", path="alice", resource="memory_mb") == 64
    expiry = alice.cert.not_valid_after_utc.timestamp()
    assert value(found, "albatross_delegation_expiry_timestamp_seconds", path="alice") == expiry
    assert "# TYPE albatross_endpoint_request_duration_seconds histogram" in text


async def test_a_failing_metrics_hook_never_decides_a_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Metrics observe: a hook that raises (a full disk under the --workers value files)
    is logged, and the command is served and the server goes on."""
    import tlsendpoint.metrics

    def broken(*_args: object, **_kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    async with open_rig(tmp_path) as rig, served(rig) as (_plan, metrics):
        monkeypatch.setattr(tlsendpoint.metrics, "note_chain", broken)
        monkeypatch.setattr(metrics, "close", broken)
        alice = rig.delegate(rig.root, "alice", small(unikernels=2, memory=128, block=10))
        first = await rig.send(alice, "one", rig.create(memory=32))
        monkeypatch.setattr(metrics, "open", broken)  # then nothing is opened to close
        second = await rig.send(alice, "two", rig.create(memory=32))
    assert "created" in str(first) and "created" in str(second)
    failed = [r.getMessage() for r in caplog.records if "metrics:" in r.getMessage()]
    assert any("note_chain failed" in m for m in failed)
    assert any("open failed" in m for m in failed) and any("close failed" in m for m in failed)


async def test_refusals_of_the_security_store_and_the_usage_task(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig, served(rig) as (plan, metrics):
        alice = rig.delegate(rig.root, "alice", small(unikernels=2, memory=128))
        identity = rig.identity(alice, "one", rig.create(memory=32))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(metrics.refresh_forever, rig.endpoint.vmmd_query)
            await trio.testing.wait_all_tasks_blocked()
            refreshed = metrics.refreshes
            assert "created" in str((await rig.present(identity))[-1].payload)
            with trio.fail_after(30):  # a state-changing command wakes the usage task
                while metrics.refreshes == refreshed:
                    await metrics.next_refresh()
            nursery.cancel_scope.cancel()
        assert "already executed" in failure((await rig.present(identity))[-1].payload)
        _, found = await read(plan)
    assert value(found, "albatross_endpoint_refusals_total", reason="replay") == 1
    assert value(found, "albatross_delegation_usage", path="alice", resource="unikernels") == 1


async def test_a_failing_security_store_sets_its_gauge_to_zero(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig, served(rig) as (plan, _):
        alice = rig.delegate(rig.root, "alice", small())
        store = rig.security.store

        def broken(*_: object) -> bool:
            raise StoreUnwritable("disk full (test)")

        store.record_delegations = broken  # type: ignore[method-assign,assignment]
        reply = await rig.send(alice, "one", UnikernelInfo())
        assert "cannot check this request" in failure(reply)
        _, found = await read(plan)
    assert value(found, "albatross_endpoint_refusals_total", reason="state") == 1
    assert value(found, "albatross_endpoint_security_store_up") == 0


async def test_a_renewed_delegation_replaces_its_expiry(tmp_path: Path) -> None:
    """The newest delegation at a path is in force: its expiry, not the soonest ever seen,
    so the expiry alert clears once the delegation is renewed."""
    import datetime as dt

    async with open_rig(tmp_path) as rig, served(rig) as (plan, _):
        old = rig.delegate(rig.root, "alice", small(), days=10)
        assert isinstance(await rig.send(old, "one", UnikernelInfo()), UnikernelInfoList)
        renewed_at = old.cert.not_valid_before_utc + dt.timedelta(seconds=1)
        new = rig.delegate(rig.root, "alice", small(), days=365, not_before=renewed_at)
        assert isinstance(await rig.send(new, "two", UnikernelInfo()), UnikernelInfoList)
        _, after = await read(plan)
    expected = min(new.cert.not_valid_after_utc, rig.root.cert.not_valid_after_utc)
    found = value(after, "albatross_delegation_expiry_timestamp_seconds", path="alice")
    assert found == expected.timestamp()
    assert found > old.cert.not_valid_after_utc.timestamp()


async def test_paths_beyond_the_cap_fall_into_other(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig, served(rig, max_paths=2) as (plan, metrics):
        for cn in ("alice", "bob", "carol", "dave"):
            ca = rig.delegate(rig.root, cn, small(unikernels=1, memory=64))
            assert "created" in str(await rig.send(ca, "vm", rig.create(memory=16)))
        await metrics.refresh_usage(rig.endpoint.vmmd_query)
        _, found = await read(plan)
    paths = {
        dict(labels)["path"] for (name, labels) in found if name.startswith("albatross_delegation_")
    }
    assert paths == {"alice", "bob", "other"}
    assert value(found, "albatross_delegation_usage", path="other", resource="unikernels") == 2
    assert value(found, "albatross_delegation_usage", path="other", resource="memory_mb") == 32
    assert value(found, "albatross_delegation_usage", path="bob", resource="memory_mb") == 16
    assert value(found, "albatross_delegation_expiry_timestamp_seconds", path="other") is not None
    assert len(metrics.paths) == 2


async def test_an_open_console_stream_is_a_gauge(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig, served(rig) as (plan, metrics):
        alice = rig.delegate(rig.root, "alice", small())
        assert "created" in str(await rig.send(alice, "hello", rig.create()))
        client = await rig.harness.connect(rig.identity(alice, "hello", ConsoleSubscribe(count=5)))
        assert (await client.read_one()).payload == StringReply("subscribed")
        _, during = await read(plan)
        closed = trio.Event()
        count = metrics.close

        def count_then_tell(seen: Observation, ok: bool) -> None:
            count(seen, ok)
            closed.set()

        metrics.close = count_then_tell  # type: ignore[method-assign]
        await client.tls.aclose()
        with trio.fail_after(30):  # the endpoint notices the client left, then counts it
            await closed.wait()
        _, after = await read(plan)
    stream = ("albatross_endpoint_open_streams", (("kind", "console_subscribe"),))
    assert during[stream] == 1
    assert during[("albatross_endpoint_open_connections", ())] == 1
    assert after[stream] == 0
    assert value(after, "albatross_endpoint_requests_total", kind="console_subscribe",
                 outcome="failure") == 1  # fmt: skip


async def test_a_failed_handshake_is_counted_by_reason(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig, served(rig) as (plan, _):
        ours, theirs = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rig.endpoint.handle, theirs)
            await ours.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            with trio.fail_after(30):
                while await ours.receive_some(4096):
                    pass
            await ours.aclose()
        _, found = await read(plan)
    assert value(found, "albatross_endpoint_handshake_failures_total", reason="protocol") == 1
    assert value(found, "albatross_endpoint_requests_total", kind="unikernel_info",
                 outcome="success") is None  # fmt: skip


async def test_a_silent_scraper_is_cut_off_and_never_holds_the_endpoint(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig, served(rig) as (plan, _):
        plan.close()  # again, with a short deadline per scrape
        plan = open_metrics(("127.0.0.1", 0), 64, workers=1, security=True)
        plan.scrape_timeout = 0.5
        rig.harness.endpoint.metrics = plan.endpoint_metrics()
        plan.start()
        try:
            silent = await trio.open_tcp_stream(*plan.address)
            await silent.send_all(b"GET /metrics HTTP/1.1\r\n")  # and never the rest
            alice = rig.delegate(rig.root, "alice", small())
            assert "created" in str(await rig.send(alice, "vm", rig.create()))
            with trio.fail_after(30):
                assert await silent.receive_some(4096) == b""  # cut off, without an answer
            _, found = await read(plan)  # the next scrape is served
        finally:
            plan.close()
    assert value(found, "albatross_endpoint_requests_total", kind="unikernel_create",
                 outcome="success") == 1  # fmt: skip


@pytest.mark.parametrize("client", ["untrusted", "no certificate"])
async def test_a_refused_client_certificate_is_counted_by_reason(
    tmp_path: Path, client: str
) -> None:
    async with open_rig(tmp_path) as rig, served(rig) as (plan, _):
        if client == "untrusted":  # a chain to another CA
            (tmp_path / "stranger").mkdir()
            stranger = Pki(tmp_path / "stranger").leaf("x", UnikernelInfo())
            context = stranger.client_context(tmp_path, rig.pki.root)
            reason = "certificate_verify_failed"
        else:
            context = ssl.create_default_context(cafile=str(rig.pki.ca_file))
            context.check_hostname = False
            reason = "no_client_certificate"
        ours, theirs = trio.testing.memory_stream_pair()
        tls = trio.SSLStream(ours, context, server_hostname=None)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rig.endpoint.handle, theirs)
            with trio.fail_after(30), contextlib.suppress(trio.BrokenResourceError):
                await tls.do_handshake()  # TLS 1.3: the client learns of the refusal after it
                await tls.receive_some(4096)
            await trio.aclose_forcefully(tls)
        _, found = await read(plan)
    assert value(found, "albatross_endpoint_handshake_failures_total", reason=reason) == 1
    assert sum(v for (n, _), v in found.items() if n.endswith("handshake_failures_total")) == 1


# -- the pure parts ------------------------------------------------------------------------


def _raised(
    exc: BaseException, cause: BaseException | None = None, hide: bool = False
) -> BaseException:
    """*exc* as raised while handling *cause* (``from cause``, or ``from None`` if *hide*)."""
    try:
        try:
            if cause is not None:
                raise cause
            raise exc
        except BaseException as inner:
            if inner is exc:
                raise
            if hide:
                raise exc from None
            raise exc from inner
    except BaseException as caught:
        return caught


QUOTA = QuotaError("maximum amount of unikernels (1) reached", hop=Name(("a",), None), field="x")


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (QUOTA, "quota"),
        (NameRefusal("path-only name"), "name"),
        (RollbackRefusal("older delegation"), "rollback"),
        (RevocationRefusal("revoked"), "revoked"),
        (ReplayRefusal("already executed"), "replay"),
        (PinRefusal("image sha256 ab is not pinned by the delegation alice:"), "pin"),
        (UploadFailed("the image exceeds the limit"), "limits"),
        (RequestFailed("couldn't reach service vmmd"), "daemon"),
        (Refusal("leaf certificate does not contain an albatross extension"), "chain"),
        (SecurityRefusal("this endpoint does not accept CRLs"), "security"),
        (ValueError("not a refusal"), "other"),
        # a generic refusal takes the code of what caused it, even raised "from None"
        (_raised(SecurityRefusal("cannot record"), AuditError("disk full")), "audit"),
        (_raised(SecurityRefusal("cannot record"), StoreError("locked"), hide=True), "state"),
        (_raised(Refusal("cannot check"), RevocationError("unreadable CRL")), "crl"),
        (_raised(Refusal("refused"), QUOTA), "quota"),
        (_raised(SecurityRefusal("cannot check quotas"), OSError("refused"), hide=True), "daemon"),
        (_raised(RequestFailed("error reading"), PeerClosed("vmmd closed")), "daemon"),
        # a specific class is not overridden by its cause
        (_raised(QUOTA, StoreError("x")), "quota"),
    ],
)
def test_refusal_codes_come_from_classes(exc: BaseException, code: str) -> None:
    assert refusal_code(exc) == code
    assert code in CODES


@pytest.mark.parametrize(
    ("text", "timed_out", "budget", "reason"),
    [
        ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed (_ssl.c:1000)", False, False,
         "certificate_verify_failed"),
        ("[SSL: PEER_DID_NOT_RETURN_A_CERTIFICATE] peer did not return a certificate", False,
         False, "no_client_certificate"),
        ("[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca", False, False, "peer_alert"),
        ("[SSL: HTTP_REQUEST] http request", False, False, "protocol"),
        ("[SSL: SOMETHING_NEW] new in OpenSSL 9", False, False, "tls_other"),
        ("receiving failed: [Errno 104] Connection reset by peer", False, False,
         "connection_lost"),
        (None, True, False, "timeout"),
        (None, True, True, "certificate_budget"),
    ],
)  # fmt: skip
def test_handshake_reasons(text: str | None, timed_out: bool, budget: bool, reason: str) -> None:
    assert handshake_reason(text, timed_out=timed_out, waiting_for_budget=budget) == reason


# -- the format, checked by Prometheus's own tool ------------------------------------------


async def test_promtool_accepts_the_page(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    async with open_rig(tmp_path) as rig, served(rig) as (plan, metrics):
        alice = rig.delegate(rig.root, "alice", small())
        assert "created" in str(await rig.send(alice, "vm", rig.create()))
        await metrics.refresh_usage(rig.endpoint.vmmd_query)
        text, _ = await read(plan)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""  # no lint warnings either
