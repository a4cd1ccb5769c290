"""Events out: the pull feed (`GET /v1/events`), webhook endpoints, and signed delivery to a local receiver with
retries, a delivery log and automatic disabling."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from standardwebhooks.webhooks import Webhook

from tests.fakes.server import LocalServer, Receive, Scope, Send, headers_dict, read_body, send_json
from tests.support.pipeline import wait_for, worker
from voice_service.db import tenant_tx
from voice_service.events.delivery import DeliveryPolicy
from voice_service.events.outbox import DELIVER_JOB, emit
from voice_service.runtime import Runtime
from voice_service.settings import Settings

_dec = msgspec.json.Decoder()


# The receivers below listen on http://127.0.0.1: allowed for these tests only (SSRF checks: test_webhook_security).
LOCAL_TARGETS = {"webhook_allow_insecure_targets": True, "webhook_allow_private_targets": True}


@pytest.fixture(autouse=True)
def _local_targets_allowed(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app.state, "settings", msgspec.structs.replace(app.state.settings, **LOCAL_TARGETS))


@pytest.fixture(scope="module")
def runtime_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, **LOCAL_TARGETS)


@pytest.fixture(scope="module")
def runtime(runtime: Runtime) -> Runtime:
    runtime.webhook_policy = DeliveryPolicy(
        base_delay_seconds=0.05, factor=2, max_attempts=5, disable_after=4, timeout_seconds=5, jitter=0
    )
    return runtime


async def emit_event(
    runtime: Runtime, tenant_id: uuid.UUID, event_type: str, data: dict[str, Any]
) -> uuid.UUID:
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        return await emit(
            conn,
            tenant_id=tenant_id,
            event_type=event_type,
            aggregate_type="voice_call",
            aggregate_id=uuid.uuid4(),
            payload=data,
        )


async def test_pull_feed_pages_in_order_filters_and_isolates(
    client: Any, make_tenant: Any, runtime: Runtime
) -> None:
    a, b = await make_tenant(), await make_tenant()
    ids = [
        await emit_event(runtime, a.id, t, {"n": i})
        for i, t in enumerate(["voice_call.cost_recorded", "voice_call.analyzed", "voice_call.cost_recorded"])
    ]
    await emit_event(runtime, b.id, "voice_call.cost_recorded", {"n": 99})

    r = await client.get("/v1/events", params={"limit": 2}, headers=a.headers)
    assert r.status_code == 200
    first = r.json()
    assert [e["id"] for e in first["items"]] == [str(i) for i in ids[:2]]
    assert first["items"][0]["type"] == "voice_call.cost_recorded" and first["items"][0]["data"] == {"n": 0}
    r = await client.get("/v1/events", params={"after": first["next_cursor"]}, headers=a.headers)
    assert [e["id"] for e in r.json()["items"]] == [str(ids[2])]
    # At the end the cursor stays put: poll again with it later.
    end = r.json()["next_cursor"]
    r = await client.get("/v1/events", params={"after": end}, headers=a.headers)
    assert r.json() == {"items": [], "next_cursor": end}
    later = await emit_event(runtime, a.id, "voice_call.analyzed", {"n": 3})
    r = await client.get("/v1/events", params={"after": end}, headers=a.headers)
    assert [e["id"] for e in r.json()["items"]] == [str(later)]

    r = await client.get("/v1/events", params={"types": "voice_call.analyzed"}, headers=a.headers)
    assert [e["data"]["n"] for e in r.json()["items"]] == [1, 3]
    r = await client.get("/v1/events", headers=b.headers)
    assert [e["data"]["n"] for e in r.json()["items"]] == [99]
    r = await client.get("/v1/events", params={"after": "not-a-cursor"}, headers=a.headers)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "after"


async def test_event_of_an_open_transaction_is_not_skipped(
    client: Any, tenant: Any, runtime: Runtime
) -> None:
    """An event whose transaction commits after a later event's must still come after the reader's cursor."""
    async with tenant_tx(runtime.pool, tenant.id) as slow:
        slow_id = await emit(
            slow,
            tenant_id=tenant.id,
            event_type="voice_call.analyzed",
            aggregate_type="voice_call",
            aggregate_id=None,
            payload={"who": "slow"},
        )
        fast_id = await emit_event(runtime, tenant.id, "voice_call.analyzed", {"who": "fast"})
        r = await client.get("/v1/events", headers=tenant.headers)
        # The fast event is committed, but held back while the older (slow) transaction is open: paging by seq
        # alone would hand it out now and move the cursor past the slow event's lower seq.
        assert r.json()["items"] == []
        cursor = r.json()["next_cursor"]
    r = await client.get("/v1/events", params={"after": cursor} if cursor else {}, headers=tenant.headers)
    assert [e["id"] for e in r.json()["items"]] == [str(slow_id), str(fast_id)]


async def test_webhook_endpoint_crud(client: Any, make_tenant: Any) -> None:
    a, b = await make_tenant(), await make_tenant()
    r = await client.post(
        "/v1/webhook-endpoints",
        json={"url": "https://hooks.example.com/voice", "event_types": ["voice_call.analyzed"]},
        headers=a.headers,
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["secret"].startswith("whsec_") and created["event_types"] == ["voice_call.analyzed"]
    listed = (await client.get("/v1/webhook-endpoints", headers=a.headers)).json()["items"]
    assert [e["id"] for e in listed] == [created["id"]] and "secret" not in listed[0]
    assert (await client.get(f"/v1/webhook-endpoints/{created['id']}", headers=b.headers)).status_code == 404
    assert (
        await client.delete(f"/v1/webhook-endpoints/{created['id']}", headers=b.headers)
    ).status_code == 404
    r = await client.post("/v1/webhook-endpoints", json={"url": "ftp://x.example.com"}, headers=a.headers)
    assert r.status_code == 400
    r = await client.post(
        "/v1/webhook-endpoints",
        json={"url": "https://x.example.com", "event_types": ["Bad Type"]},
        headers=a.headers,
    )
    assert r.status_code == 400
    assert (
        await client.delete(f"/v1/webhook-endpoints/{created['id']}", headers=a.headers)
    ).status_code == 204
    assert (await client.get(f"/v1/webhook-endpoints/{created['id']}", headers=a.headers)).status_code == 404


@dataclass
class Receiver:
    """A webhook consumer on 127.0.0.1 answering with the scripted status codes (then 200)."""

    statuses: list[int]
    received: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        self.received.append((body, headers_dict(scope)))
        status = self.statuses.pop(0) if self.statuses else 200
        await send_json(send, status, {"ok": status < 300})


async def test_delivery_retries_with_backoff_and_a_valid_signature_each_time(
    client: Any, tenant: Any, runtime: Runtime
) -> None:
    receiver = Receiver(statuses=[500, 503])
    async with LocalServer(receiver) as srv:
        r = await client.post(
            "/v1/webhook-endpoints",
            json={"url": f"{srv.http_url}/hooks", "event_types": ["voice_call.cost_recorded"]},
            headers=tenant.headers,
        )
        endpoint = r.json()
        event_id = await emit_event(runtime, tenant.id, "voice_call.cost_recorded", {"cost": "0.114784"})
        await emit_event(runtime, tenant.id, "voice_call.analyzed", {"not": "subscribed"})

        async def delivered() -> bool:
            page = (
                await client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=tenant.headers)
            ).json()
            return bool(page["items"]) and page["items"][0]["status"] == "succeeded"

        async with worker(runtime, [DELIVER_JOB]):
            await wait_for(delivered)

    assert len(receiver.received) == 3  # two failures, then the success
    verifier = Webhook(endpoint["secret"])
    for body, headers in receiver.received:
        payload = verifier.verify(body, headers)
        assert headers["webhook-id"] == str(event_id)
        assert payload["id"] == str(event_id) and payload["type"] == "voice_call.cost_recorded"
        assert payload["data"] == {"cost": "0.114784"}
    with pytest.raises(Exception, match="No matching signature"):
        Webhook("whsec_" + "A" * 32).verify(receiver.received[0][0], receiver.received[0][1])

    [delivery] = (
        await client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=tenant.headers)
    ).json()["items"]
    assert delivery["attempts"] == 3 and delivery["event_id"] == str(event_id)
    assert [(a["attempt"], a["status_code"]) for a in delivery["log"]] == [(1, 500), (2, 503), (3, 200)]
    r = await client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=tenant.headers)
    assert r.json()["consecutive_failures"] == 0 and r.json()["status"] == "active"


async def test_endpoint_is_disabled_after_repeated_failures(
    client: Any, tenant: Any, runtime: Runtime
) -> None:
    receiver = Receiver(statuses=[500] * 100)
    async with LocalServer(receiver) as srv:
        r = await client.post(
            "/v1/webhook-endpoints", json={"url": f"{srv.http_url}/hooks"}, headers=tenant.headers
        )
        endpoint = r.json()
        await emit_event(runtime, tenant.id, "voice_call.cost_recorded", {"n": 1})
        await emit_event(runtime, tenant.id, "voice_call.analyzed", {"n": 2})

        async def disabled() -> bool:
            r = await client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=tenant.headers)
            return r.json()["status"] == "disabled"

        async with worker(runtime, [DELIVER_JOB]):
            await wait_for(disabled)
            sent = len(receiver.received)
        assert sent == 4  # disable_after=4 consecutive failures, across both deliveries

    r = await client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=tenant.headers)
    assert "4 consecutive" in r.json()["disabled_reason"]
    deliveries = (
        await client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=tenant.headers)
    ).json()["items"]
    assert sorted(d["status"] for d in deliveries) == ["abandoned", "abandoned"]
    # New events skip a disabled endpoint; re-enabling it resumes delivery of new events.
    await emit_event(runtime, tenant.id, "voice_call.cost_recorded", {"n": 3})
    assert (
        len(
            (
                await client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=tenant.headers)
            ).json()["items"]
        )
        == 2
    )
    r = await client.post(f"/v1/webhook-endpoints/{endpoint['id']}/enable", headers=tenant.headers)
    assert r.json()["status"] == "active" and r.json()["consecutive_failures"] == 0


async def test_the_feed_orders_transactions_by_number_not_by_their_digits(
    client: Any, tenant: Any, admin_conn: Any
) -> None:
    """Transaction 10 comes after 9 (as text it sorts first: the feed handed events out twice or skipped them)."""
    ids = []
    for txid in (9, 10, 100):  # long finished (below every open transaction): the feed shows them
        ids.append(await admin_conn.fetchval(
            "INSERT INTO domain_events (tenant_id, event_type, aggregate_type, payload, txid) "
            "VALUES ($1, 'voice_call.analyzed', 'voice_call', $2::jsonb, $3::xid8) RETURNING id",
            tenant.id, msgspec.json.encode({"txid": txid}).decode(), txid))
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        r = await client.get("/v1/events", params={"limit": 1, **({"after": cursor} if cursor else {})},
                             headers=tenant.headers)
        page = r.json()
        if not page["items"]:
            break
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
    assert seen == [str(i) for i in ids]
